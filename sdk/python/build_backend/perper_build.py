"""The PEP 517 build backend of the Perper Python SDK; it needs nothing from a package index.

pip runs a backend in an isolated environment into which it installs build-system.requires;
that list is empty here, so `pip install ./sdk/python` works offline. The backend uses the
standard library only: protoc and grpc_python_plugin (on PATH, or PERPER_PROTOC and
PERPER_GRPC_PYTHON_PLUGIN; Debian: protobuf-compiler, protobuf-compiler-grpc) generate
perper/grpc2/*_pb2*.py, and the wheel is a zip written here. The .proto files and the version
come from the checkout (../../proto, the project version in ../../CMakeLists.txt) or, when
building from an sdist, from its proto/ folder and PKG-INFO.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # sdk/python, or the unpacked sdist
PROTOS = ("model", "options", "descriptors", "executions", "instances", "streams", "states",
          "introspection")
# Fixed timestamps: the same sources give the same archive.
EPOCH = (1980, 1, 1, 0, 0, 0)


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


def _version() -> str:
    pkg_info = ROOT / "PKG-INFO"
    if pkg_info.exists():
        return re.search(r"^Version: (\S+)$", pkg_info.read_text(), re.M).group(1)
    cmake = (ROOT.parent.parent / "CMakeLists.txt").read_text()
    return re.search(r"project\(\s*perper\s+VERSION\s+([0-9.]+)", cmake).group(1)


def _proto_root() -> Path:
    bundled = ROOT / "proto"
    return bundled if bundled.is_dir() else ROOT.parent.parent / "proto"


def _tool(variable: str, name: str, package: str) -> str:
    tool = os.environ.get(variable) or shutil.which(name)
    if not tool:
        raise RuntimeError(f"perper: {name} is needed to generate the grpc2 stubs; install the "
                           f"Debian package {package} (scripts/install-deps.sh) or set {variable}")
    return tool


def _stubs() -> dict[str, bytes]:
    """Generates the grpc2 stubs; returns {path in the wheel: content}."""
    protoc = _tool("PERPER_PROTOC", "protoc", "protobuf-compiler")
    plugin = _tool("PERPER_GRPC_PYTHON_PLUGIN", "grpc_python_plugin", "protobuf-compiler-grpc")
    proto_root = _proto_root()
    with tempfile.TemporaryDirectory(prefix="perper-stubs-") as out:
        subprocess.run([protoc, "-I", str(proto_root), f"--python_out={out}",
                        f"--grpc_python_out={out}", f"--plugin=protoc-gen-grpc_python={plugin}",
                        *(str(proto_root / "perper" / "grpc2" / f"{name}.proto")
                          for name in PROTOS)], check=True)
        generated = {f"perper/grpc2/{path.name}": path.read_bytes()
                     for path in sorted((Path(out) / "perper" / "grpc2").glob("*.py"))}
    generated["perper/grpc2/__init__.py"] = b""
    return generated


def _metadata(version: str) -> str:
    project = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}",
             f"Summary: {project['description']}", f"License: {project['license']['text']}",
             f"Requires-Python: {project['requires-python']}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in project["dependencies"]]
    return "\n".join(lines) + "\n"


def _dist_info(version: str) -> tuple[str, dict[str, bytes]]:
    name = f"perper-{version}.dist-info"
    wheel = ("Wheel-Version: 1.0\nGenerator: perper_build\nRoot-Is-Purelib: true\n"
             "Tag: py3-none-any\n")
    return name, {f"{name}/METADATA": _metadata(version).encode(),
                  f"{name}/WHEEL": wheel.encode()}


def _record_hash(content: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings=None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None) -> str:
    name, files = _dist_info(_version())
    for path, content in files.items():
        target = Path(metadata_directory) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    version = _version()
    files = {f"perper/{path.name}": path.read_bytes()
             for path in sorted((ROOT / "perper").glob("*.py"))}
    files["perper/_version.py"] = f'__version__ = "{version}"\n'.encode()
    files.update(_stubs())
    name, dist_info = _dist_info(version)
    files.update(dist_info)
    record = "".join(f"{path},{_record_hash(content)},{len(content)}\n"
                     for path, content in files.items()) + f"{name}/RECORD,,\n"
    files[f"{name}/RECORD"] = record.encode()
    wheel_name = f"perper-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, content in files.items():
            info = zipfile.ZipInfo(path, EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, content)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None) -> str:
    version = _version()
    base = f"perper-{version}"
    files = {"pyproject.toml": (ROOT / "pyproject.toml").read_bytes(),
             "build_backend/perper_build.py": Path(__file__).read_bytes(),
             "PKG-INFO": _metadata(version).encode()}
    files.update({f"perper/{path.name}": path.read_bytes()
                  for path in sorted((ROOT / "perper").glob("*.py"))})
    files.update({f"proto/perper/grpc2/{name}.proto":
                  (_proto_root() / "perper" / "grpc2" / f"{name}.proto").read_bytes()
                  for name in PROTOS})
    sdist_name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / sdist_name, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return sdist_name
