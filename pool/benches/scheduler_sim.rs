//! Deterministic scheduler simulation: the real `Scheduler` driven with simulated
//! time (no sockets), 1,000 miners with a 10x spread in speed, 5 % of them vanishing
//! silently mid-task (noticed only by lease expiry and the 120 s idle timeout, the
//! worst case), and a mix of jobs on two circuits of different cost. Reports the
//! makespan against the ideal lower bound (total work / total speed) and job
//! completion times. Run: `cargo bench -p zkpool-pool --bench scheduler_sim`
//! (SIM_SEED=N to vary the seed).

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use pool::scheduler::{JobEntry, SchedConfig, Scheduler, Task};
use rand::{rngs::StdRng, Rng, SeedableRng};

const MINERS: usize = 1000;
const DROPOUT: f64 = 0.05;
const JOBS: usize = 40;
/// Seconds a cost-1 statement takes on a speed-1 miner.
const COSTS: [f64; 2] = [1.0, 0.25];
const IDLE_TIMEOUT: f64 = 120.0;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Done { miner: usize, task: stratum::TaskId },
    Vanish { miner: usize },
    Remove { miner: usize },
    Sweep,
}

struct Miner {
    speed: f64,
    alive: bool,
    busy: bool,
    queue: VecDeque<Task>,
    /// When this miner vanishes, if it does.
    vanish_at: Option<f64>,
}

/// Starts the next queued task of an idle, living miner.
fn start(
    m: usize,
    miners: &mut [Miner],
    now: f64,
    job_cost: &HashMap<String, f64>,
    out: &mut Vec<(f64, Event)>,
) {
    let miner = &mut miners[m];
    if miner.busy || !miner.alive {
        return;
    }
    if let Some(task) = miner.queue.pop_front() {
        miner.busy = true;
        let finish = now + task.count as f64 * job_cost[task.job.as_str()] / miner.speed;
        match miner.vanish_at {
            Some(v) if v < finish => out.push((v.max(now), Event::Vanish { miner: m })),
            _ => out.push((
                finish,
                Event::Done {
                    miner: m,
                    task: task.id.clone(),
                },
            )),
        }
    }
}

fn main() {
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
    let mut sched = Scheduler::new(SchedConfig {
        target_task: Duration::from_secs(10),
        lease_min: Duration::from_secs(60),
        max_per_task: 256,
        tasks_per_session: 2,
        max_attempts: 0,
        // The pool's default; SIM_BACKUP=0 turns backup leases off for comparison.
        backup_after: if std::env::var("SIM_BACKUP").as_deref() == Ok("0") {
            Duration::ZERO
        } else {
            Duration::from_secs(10)
        },
    });

    // Jobs: a circuit and a number of statements each; all arrive at t = 0.
    let mut job_cost = HashMap::new();
    let mut total_work = 0.0;
    for j in 0..JOBS {
        let circuit = rng.gen_range(0..2);
        let statements: u64 = rng.gen_range(20_000..250_000);
        total_work += statements as f64 * COSTS[circuit];
        let id = format!("job{j}");
        job_cost.insert(id.clone(), COSTS[circuit]);
        sched.add_job(JobEntry {
            id: id.into(),
            circuit_id: format!("c{circuit}").into(),
            circuit_name: format!("c{circuit}"),
            deadline_ms: rng.gen_range(1..=4) * 3_600_000,
            created_ms: j as u64,
            total: statements,
            done: BTreeSet::new(),
            max_per_task: 256,
            client: format!("client{}", j % 7),
            allow: None,
            shared: false,
        });
    }
    // Miners: speed log-uniform in [1, 10].
    let mut miners: Vec<Miner> = (0..MINERS)
        .map(|_| Miner {
            speed: 10f64.powf(rng.gen::<f64>()),
            alive: true,
            busy: false,
            queue: VecDeque::new(),
            vanish_at: None,
        })
        .collect();
    let total_speed: f64 = miners.iter().map(|m| m.speed).sum();
    let ideal = total_work / total_speed;
    for (k, m) in miners.iter_mut().enumerate() {
        sched.add_session(
            k as u64,
            stratum::Worker::parse(&format!("w.r{k}")).expect("valid worker"),
            None,
        );
        if rng.gen::<f64>() < DROPOUT {
            // Somewhere within the ideal makespan: mid-task for a busy miner.
            m.vanish_at = Some(rng.gen_range(0.0..ideal));
        }
    }

    let mut events: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut pending: Vec<(f64, Event)> = vec![(1.0, Event::Sweep)];
    let mut now = 0.0;
    let mut completed_jobs: Vec<f64> = vec![];
    let mut late = 0u64;
    let mut tasks_done = 0u64;
    let mut backups_cancelled = 0u64;
    loop {
        for task in sched.poll_assignments(at(now)) {
            let m = task.session as usize;
            miners[m].queue.push_back(task);
            start(m, &mut miners, now, &job_cost, &mut pending);
        }
        for (t, e) in pending.drain(..) {
            seq += 1;
            events.push(Reverse(((t * 1e6) as u64, seq, e)));
        }
        if completed_jobs.len() == JOBS {
            break;
        }
        let Some(Reverse((t, _, event))) = events.pop() else {
            panic!("simulation stalled with {} jobs done", completed_jobs.len())
        };
        now = t as f64 / 1e6;
        match event {
            Event::Done { miner, task } => {
                miners[miner].busy = false;
                match sched.complete(miner as u64, &task, at(now)) {
                    Ok(c) => {
                        tasks_done += 1;
                        if c.job_done {
                            completed_jobs.push(now);
                        }
                        // The twin of a task and its backup gets mining.cancel: a
                        // queued one is dropped; one being proven runs to its end
                        // (and is discarded), which is the pessimistic case.
                        if let Some(twin) = c.cancelled {
                            let m = &mut miners[twin.session as usize];
                            m.queue.retain(|t| t.id != twin.id);
                            backups_cancelled += 1;
                        }
                    }
                    // The lease expired before the proofs arrived: that work is wasted.
                    Err(_) => late += 1,
                }
                start(miner, &mut miners, now, &job_cost, &mut pending);
            }
            Event::Vanish { miner } => {
                // Silent: no disconnect. The pool notices through lease expiry and,
                // after the idle timeout, drops the session.
                miners[miner].alive = false;
                miners[miner].queue.clear();
                pending.push((now + IDLE_TIMEOUT, Event::Remove { miner }));
            }
            Event::Remove { miner } => {
                sched.remove_session(miner as u64);
            }
            Event::Sweep => {
                for t in sched.expire(at(now)) {
                    // A living miner whose lease expired drops the task from its queue (mining.cancel).
                    miners[t.session as usize].queue.retain(|q| q.id != t.id);
                }
                pending.push((now + 1.0, Event::Sweep));
            }
        }
    }
    completed_jobs.sort_by(|a, b| a.partial_cmp(b).expect("times are finite"));
    let makespan = *completed_jobs.last().expect("all jobs completed");
    let p = |q: f64| completed_jobs[((completed_jobs.len() as f64 - 1.0) * q).round() as usize];
    let vanished = miners.iter().filter(|m| !m.alive).count();
    println!("scheduler simulation (seed {seed}): {MINERS} miners, speeds 1-10x, {vanished} vanished mid-run, {JOBS} jobs, {total_work:.0} work units");
    println!("  ideal makespan (total work / total speed of all {MINERS} miners): {ideal:.1} s");
    println!(
        "  makespan: {makespan:.1} s = {:.3} x ideal",
        makespan / ideal
    );
    println!(
        "  job completion: p50 {:.1} s, p90 {:.1} s, p99 {:.1} s",
        p(0.5),
        p(0.9),
        p(0.99)
    );
    println!(
        "  tasks completed {tasks_done}; completions discarded (lease expired, or the twin won) {late}; twins cancelled {backups_cancelled}"
    );
}
