#!/usr/bin/env bash
# TLS to the candidate against plain text, same run (issue 15). nginx sits in front of the
# candidate backends twice, plain and https (a CA and a server certificate made here by
# openssl), so the only difference between the two rows is TLS between shadowdiff and nginx:
#   throughput: wrk (closed loop, RUNS runs of SECONDS, median) through shadowdiff with the fast
#     candidate behind nginx plain / https; CPU µs per request of the shadowdiff process;
#   memory: the candidate +2 s behind nginx plain / https, an open loop at SLOW_RATE for
#     SLOW_SECS (enough for shadow.max_in_flight = 1,024 in flight): peak RSS (VmHWM) over idle
#     and the highest shadowdiff_shadow_in_flight seen.
# Then the https rows against the plain ones.
#
# Needs: nginx, wrk, openssl, a release build (cargo build --release --example loadtool --bin shadowdiff).
# Usage: benches/tls.sh [SECONDS=5] [RUNS=3] [CONNECTIONS=32] [SLOW_RATE=700] [SLOW_SECS=6]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
RUNS=${2:-3}
CONNS=${3:-32}
SLOW_RATE=${4:-700}
SLOW_SECS=${5:-6}
. benches/load/common.sh tls
HZ=$(getconf CLK_TCK)
median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }

backends 18081 18082 18085
# nginx answers with its own Server and Date: not what is measured here.
cat >"$WORK/rules.yaml" <<'YAML'
version: 1
rules:
  - match: "*"
    ignore_headers: [date, server]
    ignore: ["/meta/generated_at"]
YAML

# Certificates: a CA and a server certificate for 127.0.0.1.
(
  cd "$WORK"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=server 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
)

# 18445 plain / 18443 https → fast backend; 18446 plain / 18444 https → +2 s backend.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  ssl_certificate $WORK/server.pem;
  ssl_certificate_key $WORK/server.key;
  upstream fast { server 127.0.0.1:18082; keepalive 128; }
  upstream slow { server 127.0.0.1:18085; keepalive 1200; }
  server { listen 127.0.0.1:18445; location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://fast; } }
  server { listen 127.0.0.1:18443 ssl; location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://fast; } }
  server { listen 127.0.0.1:18446; location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://slow; } }
  server { listen 127.0.0.1:18444 ssl; location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://slow; } }
}
CONF
"${LOAD_CPU[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" & PIDS+=($!)
for p in 18443 18444 18445 18446; do wait_port "$p"; done

start_proxy() { # $1 candidate URL
  cat >"$WORK/shadowdiff.yaml" <<YAML
listen: 127.0.0.1:18092
primary: http://127.0.0.1:18081
candidate: $1
admin: 127.0.0.1:18093
rules: $WORK/rules.yaml
sinks: {file: {path: $WORK/events.jsonl}}
log: {level: warn}
tls: {candidate: {ca_file: $WORK/ca.pem}}
YAML
  # The tls block is for https candidates only.
  case $1 in http://*) sed -i '/^tls:/d' "$WORK/shadowdiff.yaml" ;; esac
  "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>>"$WORK/proxy.log" & SPID=$!; PIDS+=($SPID)
  wait_port 18092
}
stop_proxy() { kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; }
verdicts() {
  curl -s http://127.0.0.1:18093/metrics | awk '
    /^shadowdiff_exchanges_total/ { match($0, /verdict="[a-z_]*"/); v = substr($0, RSTART + 9, RLENGTH - 10); n[v] += $NF }
    /^shadowdiff_shadow_skipped_total/ && $NF > 0 { split($0, a, "\""); n["skip:" a[2]] += $NF }
    END { for (v in n) if (n[v] > 0) printf "%s%s=%d", (s++ ? "," : ""), v, n[v] }'
}

ROWS="$WORK/tls.tsv"
printf "phase\tcandidate\tmax_rps\trps_runs\tcpu_us_per_req\tidle_rss_kib\tpeak_rss_kib\tover_idle_kib\tin_flight_max\tverdicts\n" >"$ROWS"
url=http://127.0.0.1:18092/orders/12345
for cand in plain https; do
  port=18445; [ $cand = https ] && port=18443
  start_proxy "$( [ $cand = https ] && echo https || echo http )://127.0.0.1:$port"
  idle=$(awk '/VmRSS/{print $2}' /proc/$SPID/status)
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
  t0=$(ticks "$SPID"); rps=(); reqs=0
  for _ in $(seq 1 "$RUNS"); do
    out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$url")
    rps+=("$(echo "$out" | awk '/Requests\/sec/{print $2}')")
    reqs=$((reqs + $(echo "$out" | awk '/requests in/{print $1}')))
  done
  t1=$(ticks "$SPID")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", d/hz*1e6/n}')
  peak=$(awk '/VmHWM/{print $2}' /proc/$SPID/status)
  printf "throughput\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t%s\n" "$cand" "$(median "${rps[@]}")" "$(IFS=/; echo "${rps[*]}")" "$cpu" \
    "$idle" "$peak" $((peak - idle)) "$(verdicts)" | tee -a "$ROWS"
  stop_proxy

  port=18446; [ $cand = https ] && port=18444
  start_proxy "$( [ $cand = https ] && echo https || echo http )://127.0.0.1:$port"
  idle=$(awk '/VmRSS/{print $2}' /proc/$SPID/status)
  "${LOAD_CPU[@]}" $TOOL open "$url" "$SLOW_RATE" "$SLOW_SECS" >/dev/null & LPID=$!
  most=0
  while kill -0 "$LPID" 2>/dev/null; do
    n=$(curl -s http://127.0.0.1:18093/metrics | awk '/^shadowdiff_shadow_in_flight /{print int($2)}')
    [ "${n:-0}" -gt "$most" ] && most=$n
    sleep 0.25
  done
  peak=$(awk '/VmHWM/{print $2}' /proc/$SPID/status)
  printf "slow_shadows\t%s\t-\t-\t-\t%s\t%s\t%s\t%s\t%s\n" "$cand" "$idle" "$peak" $((peak - idle)) "$most" "$(verdicts)" | tee -a "$ROWS"
  stop_proxy
done

echo
awk -F'\t' 'NR == 1 { next }
  $2 == "plain" { rps[$1] = $3; cpu[$1] = $5; over[$1] = $8 }
  $2 == "https" && $1 == "throughput" { printf "https candidate: %.0f rps = %.2f× plain (goal ≥ 0.9×); CPU %s µs/req vs %s plain\n", $3, $3 / rps[$1], $5, cpu[$1] }
  $2 == "https" && $1 == "slow_shadows" { printf "%s slow TLS shadows in flight: peak RSS +%.1f MiB over idle vs +%.1f MiB plain\n", $9, $8 / 1024, over[$1] / 1024 }' "$ROWS"
echo "rows: $ROWS"
