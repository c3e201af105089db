# Sourced by dist_launch.sh and slurm_launch.sh: the TASK MODE arguments they start with, and their checks.
# Sets TASK, MODE, NAME (the task script the user ran, for messages) and REPO; USAGE_<mode> name the
# arguments each mode takes after TASK MODE.

LAUNCHER=$(basename "${BASH_SOURCE[1]}" _launch.sh)  # dist | slurm
TASK=${1:?usage: ${LAUNCHER}_launch.sh TASK train|test ARGS...}
MODE=${2:?usage: ${LAUNCHER}_launch.sh TASK train|test ARGS...}
case $MODE in
    train) USAGE=$USAGE_train ;;
    test) USAGE=$USAGE_test ;;
    *) echo "${LAUNCHER}_launch.sh: mode must be train or test, got '$MODE'" >&2; exit 2 ;;
esac
NAME="$TASK/${LAUNCHER}_$MODE.sh"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[[ -f $REPO/$TASK/$MODE.py ]] || { echo "${LAUNCHER}_launch.sh: no $TASK/$MODE.py in $REPO" >&2; exit 2; }
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "$NAME: $*" >&2; echo "usage: bash $NAME $USAGE" >&2; exit 2; }
# is_count VALUE MIN: VALUE is an integer >= MIN
is_count() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= $2 )); }
