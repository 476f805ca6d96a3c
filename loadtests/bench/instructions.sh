#!/bin/bash
# Instructions the region process executes per streamed request (callgrind), after a
# warm-up: deterministic where CPU time on a shared machine is not, so two checkouts
# compare exactly.  Usage: loadtests/bench/instructions.sh CHECKOUT [REQUESTS] [TAG]
# (CHECKOUT has its own .venv; needs valgrind, h2load, curl).
set -u
dir=$(cd "$1" && pwd); n=${2:-200}; tag=${3:-run}
cd $dir
py=$dir/.venv/bin/python
work=$(mktemp -d /tmp/cg-$tag-XXXX)
simport=$($py -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
regport=$($py -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
$py -m workers.sim --port $simport --fast --fast-tokens 20 --fast-interval-ms 1 --parallel 64 --max-queue 100000 > $work/sim.log 2>&1 &
simpid=$!
$py -c "from pathlib import Path; import sys; sys.path.insert(0,'.');
try:
    from gateway.auth import SigningKeys
except ImportError:
    from gateway.keystore import SigningKeys
SigningKeys.load_or_create(Path('$work'))"
token=$($py -c "from pathlib import Path; import sys; sys.path.insert(0,'.')
try:
    from gateway.auth import SigningKeys, mint
except ImportError:
    from gateway.keystore import SigningKeys
    from gateway.tokens import mint
print(mint(SigningKeys.load_or_create(Path('$work')).active, 'bench', lifetime=1800)[0])")
sleep 1
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.out $py -m gateway --region r --host 127.0.0.1 --port $regport --state-dir $work --slots 64 --backend http://127.0.0.1:$simport --simulated --rate-limit 0 --max-streams 0 --no-implicit-groups > $work/region.log 2>&1 &
vpid=$!
for i in $(seq 1 600); do curl -s -o /dev/null http://127.0.0.1:$regport/healthz && break; sleep 0.5; done
body='{"model":"starcoder2:3b","prompt":"def f():","options":{"num_predict":20}}'
echo "$body" > $work/body.json
h2load -n 40 -c 2 -m 10 -d $work/body.json -H "authorization: Bearer $token" -H "content-type: application/json" http://127.0.0.1:$regport/api/generate > /dev/null 2>&1
callgrind_control -i on $vpid > /dev/null
h2load -n $n -c 2 -m 20 -d $work/body.json -H "authorization: Bearer $token" -H "content-type: application/json" http://127.0.0.1:$regport/api/generate > $work/h2load.log 2>&1
callgrind_control -i off $vpid > /dev/null
callgrind_control -d $vpid > /dev/null
sleep 1
kill $vpid $simpid; wait $vpid 2>/dev/null
total=$(callgrind_annotate $work/cg.out.1 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk "{print \$1}" | tr -d ,)
echo "$tag n=$n instructions=$total per_request=$((total / n)) $(grep -E 'succeeded' $work/h2load.log)"
