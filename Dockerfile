# labsim in a container: the services and the fleet on the container's loopback.
# For real-server interop the peers come from Debian, as in .ci/install-peers.
FROM python:3.11-slim-bookworm
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      kea-dhcp4-server tftpd-hpa nginx-light curl tftp-hpa iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /labsim
COPY pyproject.toml README.md ./
COPY labsim ./labsim
COPY scenarios ./scenarios
RUN pip install --no-cache-dir .
ENTRYPOINT ["labsim"]
CMD ["run", "scenarios/quickstart.yaml", "--report-dir", "/reports"]
