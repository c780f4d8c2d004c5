# TLS (X.509, NBD_OPT_STARTTLS) with qemu-img / qemu-io and nbdinfo; without TLS the server
# answers NBD_REP_ERR_TLS_REQD (checked with the raw client).
. "$(dirname "$0")/lib.sh"
need openssl qemu-img qemu-io python3
d=$SCRATCH/pki
mkdir -p "$d"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$d/server-key.pem" -out "$d/server-cert.pem" 2>/dev/null || fail "openssl"
cp "$d/server-cert.pem" "$d/ca-cert.pem"
"$SHALE" create rbd/tls --size 16M >/dev/null || fail create
# A bad key file is refused at start.
echo junk > "$SCRATCH/bad.pem"
"$SHALE" nbd serve --listen 127.0.0.1:0 --tls-cert "$d/server-cert.pem" --tls-key "$SCRATCH/bad.pem" rbd/tls >/dev/null 2>&1 && fail "started with a bad key"
start_server s --listen 127.0.0.1:0 --tls-cert "$d/server-cert.pem" --tls-key "$d/server-key.pem" rbd/tls
port=${SRV_ADDR##*:}
obj="tls-creds-x509,id=tls0,endpoint=client,dir=$d"
img="driver=nbd,host=127.0.0.1,port=$port,export=rbd/tls,tls-creds=tls0"
randfile "$SCRATCH/src.raw" 16
qemu-img convert -n --object "$obj" -f raw "$SCRATCH/src.raw" --target-image-opts "$img" || fail "convert over TLS"
qemu-img compare --object "$obj" --image-opts "driver=raw,file.filename=$SCRATCH/src.raw" "$img" || fail "compare over TLS"
out=$(qemu-io --object "$obj" --image-opts "$img" -c 'write -P 0x42 1M 64k' -c 'write -z 2M 64k' -c 'read -P 0x42 1M 64k' -c 'read -P 0 2M 64k' 2>&1) || fail "qemu-io over TLS: $out"
echo "$out" | grep -qi "fail\|error" && fail "qemu-io over TLS: $out"
# Without TLS: qemu-img fails, the raw client gets TLS_REQD for everything but STARTTLS.
qemu-img info "nbd://127.0.0.1:$port/rbd/tls" >/dev/null 2>&1 && fail "plain client accepted by a TLS server"
python3 - "$SRV_ADDR" <<'PY' || fail "TLS_REQD checks"
import os, sys
sys.path.insert(0, os.environ["TESTDIR"])
from nbdclient import *
c = Conn(sys.argv[1]); c.client_flags()
for opt, data in ((OPT_LIST, b""), (OPT_GO, b"\0\0\0\0\0\0"), (OPT_STRUCTURED, b""), (OPT_INFO, b"\0\0\0\0\0\0")):
    c.option(opt, data)
    t = c.opt_reply()[1]
    assert t == REP_ERR_TLS_REQD, "option %d answered %x before STARTTLS" % (opt, t)
c.option(OPT_EXPORT_NAME, b"rbd/tls")
assert closed(c.s), "EXPORT_NAME before STARTTLS not refused"
c = Conn(sys.argv[1]); c.client_flags(); c.option(OPT_STARTTLS)
assert c.opt_reply()[1] == REP_ACK
PY
if command -v nbdinfo >/dev/null; then
    nbdinfo --size "nbds://127.0.0.1:$port/rbd/tls?tls-certificates=$d" >/dev/null 2>&1 && echo "nbdinfo over TLS ok" || echo "nbdinfo over TLS not checked (libnbd without this TLS setup)"
fi
stop_server "$SRV_PID" || fail "exit status"
"$SHALE" export rbd/tls "$SCRATCH/out.raw" >/dev/null || fail export
head -c 1M "$SCRATCH/out.raw" | cmp - <(head -c 1M "$SCRATCH/src.raw") || fail "image after TLS writes"
echo ok
