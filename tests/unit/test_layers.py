"""The package's layering, checked on every module's source.

labsim keeps protocol logic free of I/O (the h11/aioquic shape, docs/architecture.md):
codecs (`wire/`), phones (`phones/`) and each service's core take bytes and the time and
return what to do, so the same code runs on real sockets, on an in-memory network and on
a simulated clock. This test reads every module's imports (also those inside functions)
and fails when

- a pure module (everything in `wire/` and `phones/`, and each service core) imports
  Twisted, sockets, an event loop, or touches files (builtin `open`, `os` file calls,
  `pathlib`, `shutil`, `tempfile`), or imports a labsim module that is not pure itself;
- `transport/` (the phones' clients) and `services/` (the servers) import each other:
  both stand on the shared socket layer `net/`, which imports neither.

It also imports every module, so a module that no longer imports fails here first.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import labsim

ROOT = Path(labsim.__file__).parent

# Each service's I/O-free core. Its Twisted adapter lives beside it (`*_udp.py`,
# `*_tcp.py`, `*_web.py`) and is not listed.
SERVICE_CORES = {
    "labsim.services.dhcp",
    "labsim.services.dhcp_classes",
    "labsim.services.dhcp_leases",
    "labsim.services.file_store",
    "labsim.services.tftp",
    "labsim.services.tftp_transfer",
    "labsim.services.http",
    "labsim.services.http_files",
    "labsim.services.dns",
    "labsim.services.pnp",
}

# Cores still mixed with their adapter. Issue 14 started with tftp, http, dns and pnp here
# and split each; the list is empty and may only stay so. An entry must still break a rule:
# a core that became pure fails `test_known_impure_list_is_current` until it is removed.
KNOWN_IMPURE: set[str] = set()

PURE_PACKAGES = ("labsim.wire.", "labsim.phones.")

# Top-level modules a pure module may not import: the event loop, sockets, files, processes.
FORBIDDEN_MODULES = {
    "twisted", "zope", "socket", "select", "selectors", "fcntl", "asyncio", "pyftpdlib",
    "OpenSSL", "pathlib", "shutil", "tempfile", "subprocess", "io", "mmap",
}
# `socket` is also where Python keeps its address converters; these touch no socket.
ALLOWED_FROM = {"socket": {"inet_aton", "inet_ntoa", "inet_pton", "inet_ntop", "AF_INET", "AF_INET6"}}
# os is allowed for os.urandom and the like, not for the file system.
OS_FILE_CALLS = {
    "open", "read", "write", "close", "stat", "fstat", "lstat", "listdir", "scandir", "walk",
    "remove", "unlink", "rename", "replace", "makedirs", "mkdir", "rmdir", "fsync", "truncate",
    "sendfile", "pread", "pwrite", "lseek", "chmod", "utime", "link", "symlink", "readlink",
    "getcwd", "chdir", "path",
}


def all_modules() -> list[str]:
    names = ["labsim"]
    for info in pkgutil.walk_packages([str(ROOT)], prefix="labsim."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


def source_path(module: str) -> Path:
    parts = module.split(".")[1:]
    package = ROOT.joinpath(*parts)
    return package / "__init__.py" if package.is_dir() else ROOT.joinpath(*parts[:-1], parts[-1] + ".py")


def parsed(module: str) -> ast.Module:
    return ast.parse(source_path(module).read_text(encoding="utf-8"))


def package_of(module: str) -> str:
    return module if source_path(module).name == "__init__.py" else module.rpartition(".")[0]


def imports_in(tree: ast.AST, package: str) -> list[tuple[int, str, set[str]]]:
    """(line, imported module, names taken from it) for every import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, set()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = {alias.name for alias in node.names}
            found.append((node.lineno, base, names))
            # `from labsim.wire import dhcp` imports the module labsim.wire.dhcp
            found.extend((node.lineno, f"{base}.{name}", set()) for name in names if f"{base}.{name}" in MODULES)
    return found


def file_io_in(tree: ast.AST) -> list[str]:
    """Calls that touch the file system: builtin open(), os.<file call>, from os import <file call>."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            problems.append(f"line {node.lineno}: open()")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "os" and node.attr in OS_FILE_CALLS):
            problems.append(f"line {node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "os.path"):
            names = {alias.name for alias in node.names}
            if node.module == "os.path" or names & OS_FILE_CALLS:
                problems.append(f"line {node.lineno}: from {node.module} import {', '.join(sorted(names))}")
    return problems


def imports_of(module: str) -> list[tuple[int, str, set[str]]]:
    return imports_in(parsed(module), package_of(module))


MODULES = all_modules()


def is_pure(module: str) -> bool:
    if module.startswith(PURE_PACKAGES) or module in SERVICE_CORES:
        return True
    # a package whose __init__ imports nothing runs nothing when imported
    return source_path(module).name == "__init__.py" and not imports_of(module)


def purity_problems(module: str, tree: ast.AST | None = None) -> list[str]:
    tree = tree if tree is not None else parsed(module)
    problems = []
    for line, imported, names in imports_in(tree, package_of(module)):
        top = imported.split(".")[0]
        if top in FORBIDDEN_MODULES:
            allowed = ALLOWED_FROM.get(top, set())
            if not names or not names <= allowed:
                problems.append(f"line {line}: imports {imported}" + (f" ({', '.join(sorted(names - allowed))})" if names else ""))
        elif imported in MODULES and not is_pure(imported):
            problems.append(f"line {line}: imports {imported}, which is not I/O-free")
    return problems + file_io_in(tree)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module", [m for m in MODULES if is_pure(m) and m not in KNOWN_IMPURE])
def test_pure_modules_do_no_io(module):
    problems = purity_problems(module)
    assert not problems, f"{source_path(module).relative_to(ROOT.parent)} must stay I/O-free:\n  " + "\n  ".join(problems)


def test_known_impure_list_is_current():
    # One test over the list, not one per entry: the list is empty now (every core is
    # I/O-free) and an empty parametrization would be reported as a skip.
    for module in sorted(KNOWN_IMPURE):
        assert module in MODULES, f"{module} no longer exists: drop it from KNOWN_IMPURE"
        assert purity_problems(module), f"{module} is I/O-free now: drop it from KNOWN_IMPURE"


LAYER_RULES = [
    # (modules under, may not import anything under)
    ("labsim.transport.", "labsim.services"),
    ("labsim.services.", "labsim.transport"),
    ("labsim.net.", "labsim.services"),
    ("labsim.net.", "labsim.transport"),
]


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(("labsim.transport.", "labsim.services.", "labsim.net."))])
def test_clients_and_servers_share_only_the_socket_layer(module):
    problems = [
        f"line {line}: imports {imported}"
        for line, imported, _ in imports_of(module)
        for under, banned in LAYER_RULES
        if module.startswith(under) and (imported == banned or imported.startswith(banned + "."))
    ]
    assert not problems, f"{source_path(module).relative_to(ROOT.parent)} crosses a layer:\n  " + "\n  ".join(problems)


def test_the_checker_sees_what_it_must():
    """The rules above can fail: each forbidden thing in a sample core is reported, the
    allowed ones (address converters, os.urandom, pure labsim modules) are not."""
    sample = ast.parse(
        "import twisted.internet\n"
        "from socket import socket\n"
        "from socket import inet_aton, inet_ntoa\n"
        "import os\n"
        "from labsim.wire import dhcp\n"
        "from labsim.services import tftp_udp\n"
        "def f():\n"
        "    open('x')\n"
        "    os.stat('x')\n"
        "    os.urandom(4)\n"
    )
    problems = purity_problems("labsim.services.dhcp", sample)
    assert problems == [
        "line 1: imports twisted.internet",
        "line 2: imports socket (socket)",
        "line 6: imports labsim.services.tftp_udp, which is not I/O-free",
        "line 8: open()",
        "line 9: os.stat",
    ]
