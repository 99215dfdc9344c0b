//! Encode and decode cost per method, on lines shaped like real traffic (a submit of
//! 16 proofs, a notify of 16 chain statements, a submit answer with its receipt).
//! `cargo bench -p zkpool-stratum --bench codec`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stratum::{ToMiner, ToPool, Wire};

fn hex(n: usize, seed: u8) -> String {
    (0..n)
        .map(|i| format!("{:02x}", (i as u8).wrapping_mul(31).wrapping_add(seed)))
        .collect()
}

/// A 77-digit decimal field element, as statements carry them.
fn field(i: u64) -> String {
    format!("{:020}", 12_345_678_901_234_567_890u128 / (i as u128 + 1)).repeat(4)[..77].to_owned()
}

/// (method name, line) pairs.
type Lines = Vec<(&'static str, String)>;

fn lines() -> (Lines, Lines) {
    let proofs: Vec<String> = (0..16)
        .map(|i| {
            format!(
                "{{\"index\":{},\"proof\":\"{}\"}}",
                100 + i,
                hex(128, i as u8)
            )
        })
        .collect();
    let statements: Vec<String> = (0..16u64)
        .map(|i| {
            format!(
                "{{\"index\":{},\"public\":[\"{}\",\"{}\",\"{}\"]}}",
                100 + i,
                i,
                field(i),
                field(i + 1)
            )
        })
        .collect();
    let to_pool = vec![
        ("subscribe", r#"{"jsonrpc":"2.0","id":1,"method":"mining.subscribe","params":{"agent":"zkminer/0.1.0","protocol":"zkpool/1","capabilities":{"backends":["arkworks"],"circuits":[],"threads":16}}}"#.to_owned()),
        ("authorize", r#"{"jsonrpc":"2.0","id":2,"method":"mining.authorize","params":{"worker":"alice.rig1","password":"zkw_0123456789abcdef"}}"#.to_owned()),
        ("submit_16", format!(r#"{{"jsonrpc":"2.0","id":7,"method":"mining.submit","params":{{"task":"5d1c0e2a9b7f4c31-4","proofs":[{}]}}}}"#, proofs.join(","))),
        ("progress", r#"{"jsonrpc":"2.0","id":8,"method":"mining.progress","params":{"task":"5d1c0e2a9b7f4c31-4","done":3}}"#.to_owned()),
        ("ping", r#"{"jsonrpc":"2.0","id":9,"method":"mining.ping","params":{}}"#.to_owned()),
    ];
    let to_miner = vec![
        (
            "notify_16",
            format!(
                r#"{{"jsonrpc":"2.0","method":"mining.notify","params":{{"task":"5d1c0e2a9b7f4c31-4","job":"5d1c0e2a9b7f4c31","circuit":"{}","spec":{{"kind":"chain","steps":64}},"key":{{"hash":"{}","url":"http://127.0.0.1:8080/v1/circuits/x/proving-key","size":5000000}},"statements":[{}],"lease_secs":60,"work_per_proof":13634}}}}"#,
                hex(32, 1),
                hex(32, 2),
                statements.join(",")
            ),
        ),
        (
            "submit_result",
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"result":{{"accepted":16,"work":218144,"receipt":{{"worker":"alice.rig1","job":"5d1c0e2a9b7f4c31","task":"5d1c0e2a9b7f4c31-4","first_statement":100,"proofs":16,"work":218144,"at_ms":1795000000000,"position":3,"signature":"{}"}}}}}}"#,
                hex(64, 3)
            ),
        ),
        (
            "set_target",
            r#"{"jsonrpc":"2.0","method":"mining.set_target","params":{"target_task_ms":10000}}"#
                .to_owned(),
        ),
    ];
    (to_pool, to_miner)
}

fn bench(c: &mut Criterion) {
    let (to_pool, to_miner) = lines();
    let mut g = c.benchmark_group("codec");
    g.sample_size(30);
    for (name, line) in &to_pool {
        let msg = ToPool::from_line(line).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| ToPool::from_line(line).unwrap())
        });
        g.bench_function(format!("encode/{name}"), |b| b.iter(|| msg.to_line()));
    }
    for (name, line) in &to_miner {
        let msg = ToMiner::from_line(line).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| ToMiner::from_line(line).unwrap())
        });
        g.bench_function(format!("encode/{name}"), |b| b.iter(|| msg.to_line()));
    }
    // The line codec over a stream of 100 mixed requests, split in 1,500-byte reads.
    let stream: String = to_pool
        .iter()
        .cycle()
        .take(100)
        .map(|(_, l)| l.clone() + "\n")
        .collect();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("line_codec/100_requests", |b| {
        b.iter(|| stratum::codec::decode_chunked::<ToPool>(65536, stream.as_bytes(), &[1500]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
