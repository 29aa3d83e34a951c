#!/usr/bin/env bash
# Prepares a Wine prefix that runs Go windows/amd64 binaries: builds the
# ProcessPrng shim (Go >= 1.22 needs it; Wine 8 lacks it) and installs it into
# the prefix's system32. Idempotent. Uses $WINEPREFIX (default ~/.wine).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-"mscoree,mshtml="} # no Mono/Gecko install dialogs

command -v wine >/dev/null || { echo "wine not installed (apt-get install wine64)" >&2; exit 1; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "x86_64-w64-mingw32-gcc not installed (apt-get install gcc-mingw-w64-x86-64)" >&2; exit 1; }

if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "wine: creating prefix $WINEPREFIX"
  wineboot --init >/dev/null 2>&1 || true
  wineserver -w || true
fi
sys32="$WINEPREFIX/drive_c/windows/system32"
dll="$sys32/bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ "$here/bcryptprimitives.c" -nt "$dll" ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$dll" "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32
  echo "wine: installed ProcessPrng shim at $dll"
fi
# A server that outlives the gaps between test binaries: go test compiles the
# next package for seconds while none runs, and a client that connects just as
# the default 3 s persistence runs out dies with "wine client error:0: recvmsg:
# Connection reset by peer" (CI, agent/metrics, 0.007 s). This one exits 60 s
# after its last client; a server already running is kept (exit status 2).
# Its system processes (services.exe, explorer.exe, ...) live as long and hold
# the stdio of the client that started them: started here on /dev/null, not
# by the first test binary, whose output go test would wait a minute for.
wineserver -p60 || true
wine cmd /c exit </dev/null >/dev/null 2>&1 || true
