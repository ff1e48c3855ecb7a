# Sourced by scripts/quickstart and scripts/test: makes the checkout's virtual
# environment (.venv/, git-ignored) with a Python >= 3.11 if it is not there yet,
# installs labsim into it (editable, with the extras named in LABSIM_EXTRAS), and
# puts it first on PATH. A venv, because Debian 12 and Ubuntu 24.04 refuse
# `pip install` into the system Python (PEP 668: externally-managed-environment).
#
# LABSIM_PYTHON picks the interpreter (default: the first of python3.11 python3.12
# python3.13 python3 that is >= 3.11); LABSIM_VENV the folder (default .venv).
labsim_python=""
for candidate in ${LABSIM_PYTHON:-python3 python3.11 python3.12 python3.13}; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        labsim_python="$candidate"
        break
    fi
done
if [ -z "$labsim_python" ]; then
    echo "labsim needs Python 3.11 or newer (3.11, 3.12 and 3.13 are tested); none found." >&2
    echo "On Debian/Ubuntu: apt-get install python3 python3-venv" >&2
    exit 2
fi
LABSIM_VENV="${LABSIM_VENV:-.venv}"
if [ ! -x "$LABSIM_VENV/bin/python" ]; then
    if ! "$labsim_python" -m venv "$LABSIM_VENV"; then
        echo "could not make a virtual environment with $labsim_python;" \
             "on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 2
    fi
    echo "labsim: made the virtual environment $LABSIM_VENV ($("$LABSIM_VENV/bin/python" --version))"
fi
# Install (again) only when pyproject.toml or the extras asked for changed since the last
# install: labsim itself is editable, so code changes need none.
stamp="$LABSIM_VENV/.labsim-installed${LABSIM_EXTRAS:-}"
wanted="$(cat pyproject.toml) ${LABSIM_EXTRAS:-}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    "$LABSIM_VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${LABSIM_EXTRAS:-}"
    printf '%s' "$wanted" > "$stamp"
fi
PATH="$PWD/$LABSIM_VENV/bin:$PATH"
export PATH VIRTUAL_ENV="$PWD/$LABSIM_VENV"
