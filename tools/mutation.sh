#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules where a silent change hurts most. Not in CI: minutes per module.
#
#   pip install -e ".[mutation]"
#   tools/mutation.sh MODULE [mutmut run args]    # MODULE: scoring media request_policy decoding tool_parsing reward
#   tools/mutation.sh all
#
# mutmut derives a module's name from its file path and imports the copy it mutates from ./mutants/, so it cannot
# work on this checkout directly: `server/engines/decoding.py` is imported as `zwz.server.engines.decoding`
# (pyproject's package-dir), and the editable install would load the unmutated file. The script therefore
# stages the tree as installed (zwz/, zwz/server/, zwz/train/, ...) under $ZWZ_MUTATION_DIR (default
# /tmp/zwz-mutation/MODULE, never inside the checkout), writes a [tool.mutmut] table into the staged
# pyproject.toml, and runs mutmut there on the module's fast unit tests only. Afterwards, in that folder:
# `mutmut results` lists the survivors and `mutmut show NAME` prints one as a diff.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="${1:-}"
[[ $# -gt 0 ]] && shift

# MODULE -> "files to mutate (installed paths)|unit tests (paths or node ids)"
declare -A plan=(
  [scoring]="zwz/scoring/extract.py zwz/scoring/numbers.py zwz/scoring/rules.py zwz/scoring/scorer.py|tests/scoring/test_scorer.py tests/scoring/test_scoring_mutants.py"
  [media]="zwz/server/serving/media.py zwz/server/serving/media_sources.py|tests/server/test_media_decoding.py tests/server/test_media_mutants.py"
  [request_policy]="zwz/server/engines/request_policy.py|tests/server/engines/test_decoding.py tests/server/engines/test_request_policy_mutants.py"
  [decoding]="zwz/server/engines/decoding.py|tests/server/engines/test_decoding.py tests/server/engines/test_decoding_mutants.py"
  [tool_parsing]="zwz/server/serving/tool_parsing.py zwz/reply_format.py|tests/test_reply_format.py tests/server/test_tool_calls.py::test_invalid_block_stays_in_content tests/server/test_tool_calls.py::test_stream_splitter_char_by_char tests/server/test_tool_parsing_mutants.py tests/test_reply_format_mutants.py"
  # test_bare_interpreter_loads_by_path finds the checkout from the file's place, which staging changes.
  [reward]="zwz/train/rewards.py|tests/train/test_rewards.py --deselect=tests/train/test_rewards.py::test_bare_interpreter_loads_by_path tests/train/test_rewards_mutants.py"
)

if [[ "$module" == all ]]; then
  for m in scoring media request_policy decoding tool_parsing reward; do "$0" "$m" "$@"; done
  exit 0
fi
if [[ -z "$module" || -z "${plan[$module]+x}" ]]; then
  echo "usage: $0 {scoring|media|request_policy|decoding|tool_parsing|reward|all} [mutmut run args]" >&2
  exit 2
fi

files="${plan[$module]%%|*}"
tests=()
# $MUTATION_TESTS replaces the module's tests (to see what another selection kills).
for t in ${MUTATION_TESTS:-${plan[$module]#*|}}; do [[ $t == -* || -e "$repo/${t%%::*}" ]] && tests+=("$t"); done
# With no selection mutmut would run the whole suite, live servers included.
[[ ${#tests[@]} -gt 0 ]] || { echo "no unit tests of $module found" >&2; exit 2; }
stage="${ZWZ_MUTATION_DIR:-/tmp/zwz-mutation}/$module"

# A fresh stage every run: mutmut keeps unmutated copies it already made, which would go stale.
rm -rf "$stage"
mkdir -p "$stage/zwz"
cp -a "$repo/zwz/." "$stage/zwz/"
for pkg in server kernels analytics distill train ui loadtest; do cp -a "$repo/$pkg" "$stage/zwz/$pkg"; done
cp -a "$repo/tests" "$stage/tests"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +

toml_list() { local out="" x; for x in "$@"; do out+="\"$x\", "; done; echo "[${out%, }]"; }
cp "$repo/pyproject.toml" "$stage/pyproject.toml"
cat >> "$stage/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["zwz"]
only_mutate = $(toml_list $files)
pytest_add_cli_args_test_selection = $(toml_list "${tests[@]}")
pytest_add_cli_args = ["-p", "no:cacheprovider"]
TOML

cd "$stage"
# One thread per test process: the workers are forks of a process that imported torch.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
set +e
nice -n 10 mutmut run "$@" 2>&1 | tee run.log
rc=${PIPESTATUS[0]}
set -e
if (( rc )); then
  if grep -q "could not find any test case for any mutant" run.log; then  # every mutant is untested
    n=$(cat $(for f in $files; do echo "mutants/$f"; done) | grep -cE "def x[^(]*__mutmut_[0-9]+\(" || true)
    echo "$module: $n mutants, none reached by the selected tests: score 0.0%"
  else
    echo "$module: mutmut failed (exit $rc; a test failing on the unmutated code?), see above" >&2
  fi
  exit "$rc"
fi
rm -f mutants/mutmut-cicd-stats.json
mutmut export-cicd-stats >/dev/null
python - "$module" <<'PY'
import json, sys
s = json.load(open("mutants/mutmut-cicd-stats.json"))
tested = s["total"] - s.get("skipped", 0)
score = 100 * (s["killed"] + s["timeout"]) / tested if tested else 0.0
print(f"{sys.argv[1]}: {s['total']} mutants, killed {s['killed']}, survived {s['survived']}, "
      f"no tests {s['no_tests']}, timeout {s['timeout']}, suspicious {s['suspicious']}: score {score:.1f}%")
PY
