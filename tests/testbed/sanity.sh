#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as
# ansible_collections/hardway/kubernetes (ansible-test insists on that path).
# ansible-test bootstraps pip in its virtualenvs with a script it downloads
# from a host this machine cannot reach; we seed its cache with an equivalent
# that runs pip from the pip wheel on PyPI. No test is skipped.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${HARDWAY_CACHE:-$HOME/.cache/hardway}
pip_version=$(python - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements as p
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(p.get_venv_packages)).group(1))
PY
)
seed=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
wheels=$cache/pip-bootstrap
if [ ! -f "$seed" ]; then
  mkdir -p "$wheels" "$(dirname "$seed")"
  python -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "pip==$pip_version"
  wheel=$(ls "$wheels"/pip-"$pip_version"-*.whl)
  cat > "$seed" <<PY
# Stand-in for ansible-test's get-pip script: installs pip from the wheel on PyPI.
import runpy, sys
sys.path.insert(0, "$wheel")
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.argv = ["pip", "install"] + args
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
fi
work=$cache/sanity/ansible_collections/hardway/kubernetes
rm -rf "$work"
mkdir -p "$work"
cd "$repo"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$work"
cd "$work"
ansible-test sanity --venv --python "$(python -c 'import sys;print("%d.%d" % sys.version_info[:2])')" --color no "$@"
