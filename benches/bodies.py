"""The gRPC request bodies the benchmark scripts send (benches/h2load.sh,
benches/instructions.sh): Verify, its basic view, Verify padded with an unknown field, Envoy's
Check with 8 request headers, and the empty health Check, each framed with gRPC's 5-byte prefix
and written as WORK/<name>.bin.

    python3 benches/bodies.py WORK KEY
"""
import struct, sys
work, key = sys.argv[1], sys.argv[2]
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
def field(num, data):  # length-delimited
    return varint(num << 3 | 2) + varint(len(data)) + data
def grpc(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg
verify = field(1, key.encode()) + field(2, b"videos:read")
headers = {"authorization": "Bearer " + key, ":authority": "api.example.com", ":method": "GET",
           ":path": "/v1/videos/42?page=2", "accept": "application/json", "user-agent": "bench/1.0",
           "x-request-id": "5f1b0c9e-bench", "x-forwarded-proto": "https"}
http = field(2, b"GET") + b"".join(field(3, field(1, k.encode()) + field(2, v.encode())) for k, v in headers.items()) \
     + field(4, b"/v1/videos/42?page=2") + field(5, b"api.example.com")
socket = field(2, b"203.0.113.9") + varint(3 << 3) + varint(40000)
attributes = field(1, field(1, field(1, socket))) + field(4, field(2, http)) + field(10, field(1, b"scopes") + field(2, b"videos:read"))
check = field(1, attributes)
basic = verify + varint(6 << 3) + varint(1)  # view: VERIFY_VIEW_BASIC (AIP-157)
padded = verify + field(15, b"x" * 300)  # an unknown field: skipped, never read
for name, msg in [("verify", verify), ("basic", basic), ("padded", padded), ("check", check), ("health", b"")]:
    open(f"{work}/{name}.bin", "wb").write(grpc(msg))
