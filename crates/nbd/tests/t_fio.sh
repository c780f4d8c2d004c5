# fio's nbd engine with verify, and a /metrics scrape during the run showing counters moving.
. "$(dirname "$0")/lib.sh"
need fio curl
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio has no nbd engine"
"$SHALE" create rbd/f --size 64M >/dev/null || fail create
start_server s --listen 127.0.0.1:0 --metrics 127.0.0.1:0 rbd/f
[ -n "$METRICS_URL" ] || fail "no metrics address printed"
port=${SRV_ADDR##*:}
scrape() { curl -sf "$METRICS_URL" | sed -n "s/^shale_image_ops_total{pool=\"rbd\",image=\"f\",op=\"$1\"} //p"; }
fio --name=v --ioengine=nbd --uri="nbd://127.0.0.1:$port/rbd/f" --rw=randwrite --bs=4k --size=32M \
    --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --output="$SCRATCH/fio1.txt" || { cat "$SCRATCH/fio1.txt"; fail "fio verify"; }
grep -q "err= 0" "$SCRATCH/fio1.txt" || { cat "$SCRATCH/fio1.txt"; fail "fio reported errors"; }
w0=$(scrape write); r0=$(scrape read)
[ "${w0:-0}" -ge 8192 ] || fail "write counter $w0 after 8192 writes"
[ "${r0:-0}" -ge 8192 ] || fail "read counter $r0 after 8192 verify reads"
# Scrape while a timed run goes on: the counters move between two scrapes.
fio --name=bg --ioengine=nbd --uri="nbd://127.0.0.1:$port/rbd/f" --rw=randrw --bs=4k --size=32M \
    --iodepth=8 --time_based --runtime=4 --output="$SCRATCH/fio2.txt" &
fpid=$!
sleep 1.5; a=$(scrape write); sleep 1.5; b=$(scrape write)
wait $fpid || fail "background fio"
[ "$b" -gt "$a" ] || fail "write counter did not move during fio ($a -> $b)"
[ "$a" -gt "$w0" ] || fail "write counter did not move ($w0 -> $a)"
body=$(curl -sf "$METRICS_URL") || fail scrape
for k in 'shale_image_latency_seconds_bucket{pool="rbd",image="f",op="write",le="+Inf"}' \
         'shale_image_bytes_total{pool="rbd",image="f",op="read"}' \
         'shale_journal_used_bytes{pool="rbd",image="f"}' 'shale_writeback_pending_bytes{pool="rbd",image="f"}' \
         'shale_cache_hit_ratio{pool="rbd",image="f"}' 'shale_segments_uploaded_total{pool="rbd",image="f"}' \
         'shale_lock_owner{pool="rbd",image="f"} 1' 'shale_lock_epoch{pool="rbd",image="f"}'; do
    echo "$body" | grep -qF "$k" || fail "metrics lack $k"
done
# Store requests for the image's data were counted (fio wrote and flushed through the store).
req=$(echo "$body" | sed -n 's/^shale_store_requests_total{pool="rbd",image="f"} //p')
[ -n "$req" ] && [ "${req%.*}" -gt 0 ] || fail "shale_store_requests_total did not count ($req)"
echo "$body" | grep -qF 'shale_store_errors_total{pool="rbd",image="f"} 0' || fail "store errors counted without a fault"
code=$(curl -s -o /dev/null -w '%{http_code}' "${METRICS_URL%/metrics}/nope")
[ "$code" = 404 ] || fail "unknown path answered $code"
stop_server "$SRV_PID" || fail "exit status"
echo ok
