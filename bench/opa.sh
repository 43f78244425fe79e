#!/usr/bin/env bash
# Downloads OPA as a C shared library, libopabridge.so (OPA v1.20.2, Go 1.26.8), from the
# pinned PyPI wheel opa-golib-python-bindings, checks the wheel's sha256, unpacks it under
# target/opa/ and prints the library's path. The wheel declares Python >= 3.14, which this
# machine does not have; only its shared library is used, so pip downloads it for 3.14.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.4.4
wheel=opa_golib_python_bindings-${version}-py3-none-manylinux_2_34_x86_64.whl
sha256=d411c901e14b8c7c3023e23e4a944f4cf429c1d31baf80e959e57d11efbfd24a
dir=target/opa/${version}
lib=${dir}/opa_bindings/libopabridge.so

if [[ "$(uname -m)" != x86_64 ]]; then
  echo "bench/opa.sh: the pinned wheel is for x86_64, this machine is $(uname -m)" >&2
  exit 2
fi
if [[ ! -f "${lib}" ]]; then
  mkdir -p "${dir}"
  python3 -m pip download --quiet --no-deps --python-version 3.14 --only-binary=:all: \
    --platform manylinux_2_34_x86_64 "opa-golib-python-bindings==${version}" -d "${dir}" >&2
  echo "${sha256}  ${dir}/${wheel}" | sha256sum --check --quiet >&2
  python3 -m zipfile -e "${dir}/${wheel}" "${dir}" >&2
fi
echo "${PWD}/${lib}"
