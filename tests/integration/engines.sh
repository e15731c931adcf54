#!/bin/bash
# serve --help lists exactly the engines this build has (the registry
# generated from storage/*/engine.cmake), and `nbdplex` offers an engine's
# subcommand (thin's `volume`) exactly when that engine is built.
. "$NP_SRC/tests/functions.sh"

# What the build has, as the server says when asked for an engine it lacks.
"$NBDPLEX" serve -l 127.0.0.1:1 -e x=no_such_engine:spec >"$TMP/unknown.log" 2>&1 &&
	fail "an unknown engine was accepted"
built=$(sed -n 's/.*unknown engine .no_such_engine. (this build has: \(.*\))$/\1/p' \
	"$TMP/unknown.log" | tr -d ' ' | tr ',' '\n' | sort)
[ -n "$built" ] || fail "no list of engines in: $(cat "$TMP/unknown.log")"
grep -qx file <<<"$built" && grep -qx mem <<<"$built" || fail "file and mem are always built"

# The engines serve --help describes: its lines "        ENGINE:SPEC  what".
"$NBDPLEX" serve --help >"$TMP/help.txt" || fail "serve --help"
listed=$(sed -n 's/^        \([a-z][a-z0-9_]*\):[^ ].*/\1/p' "$TMP/help.txt" | sort -u)
[ "$listed" = "$built" ] ||
	fail "serve --help lists engines [$(echo $listed)], the build has [$(echo $built)]"

# Each engine the source tree holds is either built or absent from both.
for dir in "$NP_SRC"/storage/*/; do
	[ -f "$dir/engine.cmake" ] || continue
	name=$(basename "$dir")
	grep -qx "$name" <<<"$built" || ! grep -q "^        $name:" "$TMP/help.txt" ||
		fail "serve --help describes $name, which is not built"
done

# Subcommands that engines contribute follow their engine.
"$NBDPLEX" --help >"$TMP/main-help.txt" || fail "nbdplex --help"
if grep -qx thin <<<"$built"; then
	grep -q '^  volume ' "$TMP/main-help.txt" || fail "nbdplex --help lacks volume"
	"$NBDPLEX" volume --help >/dev/null 2>&1 || fail "nbdplex volume --help"
else
	! grep -q '^  volume ' "$TMP/main-help.txt" || fail "volume listed without thin"
	"$NBDPLEX" volume --help >/dev/null 2>&1 && fail "volume ran without thin"
fi
pass
