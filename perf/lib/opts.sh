# Sourced by the perf/ scripts: their option parsing and die().
#
# bench_args PROG SPEC... -- "$@"
#   Each SPEC is --NAME=VAR, an option with a value ("--NAME V" or
#   "--NAME=V") stored in VAR, or --NAME:VAR=VALUE, a flag that sets VAR to
#   VALUE. -h or --help runs the script's usage() and exits 0; an unknown
#   argument or a missing value is an error (exit 2).
# die MESSAGE: the message, prefixed with PROG, and exit 1.
# stop_pids: SIGTERM to every process in the array PIDS, and waits for each.

BENCH_PROG=bench

bench_args() {
	BENCH_PROG=$1
	shift
	local -A val=() flag=()
	local s a name
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		s=$1
		shift
		case $s in
		*:*) flag[${s%%:*}]=${s#*:} ;;
		*=*) val[${s%%=*}]=${s#*=} ;;
		esac
	done
	shift
	while [ $# -gt 0 ]; do
		a=$1
		shift
		case $a in -h | --help) usage; exit 0 ;; esac
		if [ -n "${flag[$a]:-}" ]; then
			printf -v "${flag[$a]%%=*}" '%s' "${flag[$a]#*=}"
			continue
		fi
		name=${a%%=*}
		if [ -z "${val[$name]:-}" ]; then
			echo "$BENCH_PROG: unknown argument '$a' (see --help)" >&2
			exit 2
		fi
		if [ "$name" != "$a" ]; then
			printf -v "${val[$name]}" '%s' "${a#*=}"
		elif [ $# -gt 0 ]; then
			printf -v "${val[$name]}" '%s' "$1"
			shift
		else
			echo "$BENCH_PROG: $a needs a value" >&2
			exit 2
		fi
	done
}

die() {
	echo "$BENCH_PROG: $*" >&2
	exit 1
}

stop_pids() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
