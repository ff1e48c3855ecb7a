"""Cisco's encrypted profiles against the tool the guides name: a profile encrypted by the
real ``openssl enc -e -aes-256-cbc -k <phrase>`` (and compressed first by the real
``gzip``) is read by labsim's phones from the rule's ``[--key <phrase>]``, and a profile
labsim encrypts (``wire.cisco_crypt``) is what ``openssl enc -d`` decrypts. OpenSSL 3
derives the key with SHA-256 unless given ``-md md5``, the digest of the openssl-0.9.7c
the guides' firmware was tested against: both are here, the second through the fleet's
``behaviour: {key_digest: sha256}``."""

import json
import subprocess
import sys

import pytest

from labsim.wire import cisco_crypt
from tests.peers import require_binary

pytestmark = pytest.mark.interop

PROFILE = b'<flat-profile>\n  <GPP_A>from-openssl</GPP_A>\n  <Resync_Periodic>0</Resync_Periodic>\n</flat-profile>\n'


def openssl(*args: str, data: bytes) -> bytes:
    done = subprocess.run([require_binary("openssl"), "enc", *args], input=data, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("digest", ["md5", "sha256"])
def test_labsims_codec_and_openssl_enc_read_each_others_files(digest):
    made_by_openssl = openssl("-e", "-aes-256-cbc", "-md", digest, "-k", "SecretPhrase1234", data=PROFILE)
    assert cisco_crypt.decrypt(made_by_openssl, "SecretPhrase1234", digest=digest) == PROFILE
    made_by_labsim = cisco_crypt.encrypt(PROFILE, "SecretPhrase1234", digest=digest)
    assert openssl("-d", "-aes-256-cbc", "-md", digest, "-k", "SecretPhrase1234", data=made_by_labsim) == PROFILE


def test_phones_read_profiles_openssl_and_gzip_made(tmp_path):
    gzip = require_binary("gzip")
    packed = subprocess.run([gzip, "-c"], input=PROFILE.replace(b"from-openssl", b"packed"), capture_output=True,
                            check=True, timeout=30).stdout
    tree = tmp_path / "tree"
    tree.mkdir()
    # The guides' command as OpenSSL 1.0 ran it (-md md5), and as OpenSSL 3 runs it.
    (tree / "md5.cfg").write_bytes(openssl("-e", "-aes-256-cbc", "-md", "md5", "-k", "SecretPhrase1234", data=PROFILE))
    (tree / "sha256.cfg").write_bytes(openssl("-e", "-aes-256-cbc", "-k", "SecretPhrase1234", data=packed))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"""\
name: cisco-openssl
clock: virtual
services:
  dhcp: {{port: 6767, options: {{66: "http://127.0.0.1:8080/"}}}}
  http: {{port: 8080}}
provisioning: {{directory: tree}}
fleets:
  - name: md5
    vendor: cisco
    model: SPA504G
    count: 2
    first_mac: "00:0e:08:00:00:01"
    flash: {{settings: {{Profile_Rule: '[--key "SecretPhrase1234"] http://127.0.0.1:8080/md5.cfg'}}}}
  - name: sha256
    vendor: cisco
    model: CP-7841-3PCC
    count: 2
    first_mac: "00:0e:08:00:01:01"
    flash: {{settings: {{Profile_Rule: '[--key "SecretPhrase1234"] http://127.0.0.1:8080/sha256.cfg'}}}}
    behaviour: {{key_digest: sha256}}
expect:
  - phones.ready == 100%
  - flash: {{key: GPP_A, equals: from-openssl, fleet: md5}}
  - flash: {{key: GPP_A, equals: packed, fleet: sha256}}
""")
    done = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [e["passed"] for e in report["expectations"]] == [True, True, True]
    kept = {phone["mac"]: sorted(phone["flash"]["file_md5"]) for phone in report["phones"]}
    assert kept == {"00:0e:08:00:00:01": ["md5.cfg"], "00:0e:08:00:00:02": ["md5.cfg"],
                    "00:0e:08:00:01:01": ["sha256.cfg"], "00:0e:08:00:01:02": ["sha256.cfg"]}, kept
    # The same files with the other digest: the SHA-256 one fails on an MD5 phone, and says how to fix it.
    scenario.write_text(scenario.read_text().replace("    behaviour: {key_digest: sha256}\n", ""))
    done = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(tmp_path / "r2")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    failed = [p for p in json.loads((tmp_path / "r2" / "report.json").read_text())["phones"] if p["state"] == "failed"]
    assert len(failed) == 2 and all("unless given -md md5" in p["failure"] for p in failed), failed
