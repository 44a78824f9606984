//! `pgdeck lint --offline` through the real binary, in each output format (human, `--format
//! json`, `--format github`), on generated migrations of 0.5 MB and 5 MB, beside the squawk CLI
//! on the same files. Run with `cargo bench --bench lint --profile dev` (a debug build; without
//! `--profile` cargo makes a release build).
//!
//! - "migration": shaped like real large migrations: a Prisma-generated schema part (tables,
//!   indexes, foreign keys, added columns; 6 % of the file) followed by reference data loaded
//!   with multi-row INSERTs. Targets for 5 MB: at most 500 ms and 100 MB peak memory in every
//!   format.
//! - "DDL only": schema statements alone (about 33,000 in 5 MB, with 22,000 findings), the worst
//!   case for the rules and for the output. Reported, with no time or memory target.
//!
//! Then, in the bench's own process and build, squawk's parse and rules alone beside pgdeck's
//! `lint_sql` on the 5 MB files: the floor under pgdeck's time in that build.
//!
//! Each figure is the median of a few runs of the whole process, file read to output written
//! (to a file): its wall time and its CPU time (user and system, all threads), and the largest
//! peak resident memory, read with `getrusage` by a copy of this bench that starts the process
//! and has no other child. Both sizes of a shape have the same make-up and their runs are
//! taken in turns, so the 5 MB / 0.5 MB ratio shows whether the work grows linearly (target:
//! at most 11x for 10x the input, both shapes, judged on the CPU time, which another load on a
//! shared machine disturbs less than the wall time).
//!
//! squawk is squawk-cli 2.68.0 (the squawk-linter version pgdeck uses), a release build,
//! installed with pip into a virtualenv of its own under the target folder; when that cannot be
//! made, the bench says why and goes on without it. A run that takes longer than
//! `GIVE_UP_AFTER` is stopped and reported as such.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgdeck::cli::exit;
use pgdeck::lint::{LintSettings, Sizes, lint_sql};
use squawk_linter::Linter;
use squawk_syntax::SourceFile;

const RUNS: usize = 5;
const SQUAWK_RUNS: usize = 3;
const SQUAWK: &str = "squawk-cli==2.68.0";
/// The first argument that makes this bench the measuring parent of one command.
const MEASURE: &str = "--measure-one-run";
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const TARGET_TIME: Duration = Duration::from_millis(500);
const TARGET_PEAK_MB: f64 = 100.0;
const TARGET_RATIO: f64 = 11.0;

/// A kind of generated migration.
struct Shape {
    name: &'static str,
    make: fn(usize) -> String,
    /// Whether the time and memory targets apply to it.
    targeted: bool,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "migration",
        make: migration,
        targeted: true,
    },
    Shape {
        name: "DDL only",
        make: schema,
        targeted: false,
    },
];
const SIZES: [(&str, usize); 2] = [("0.5 MB", 1 << 19), ("5 MB", 5 << 20)];
const FORMATS: [&str; 3] = ["human", "json", "github"];
/// squawk's reporters beside pgdeck's formats: tty (human), json, gcc (a line a finding, as
/// GitHub annotations are).
const REPORTERS: [&str; 3] = ["tty", "json", "gcc"];

fn schema(target_bytes: usize) -> String {
    let mut sql = String::with_capacity(target_bytes + 4096);
    let mut i = 0;
    while sql.len() < target_bytes {
        sql.push_str(&format!(
            "-- CreateTable\nCREATE TABLE \"Model{i}\" (\n    \"id\" TEXT NOT NULL,\n    \"name\" TEXT NOT NULL,\n    \
             \"email\" TEXT,\n    \"status\" TEXT NOT NULL DEFAULT 'active',\n    \"amount\" DECIMAL(65,30) NOT NULL DEFAULT 0,\n    \
             \"metadata\" JSONB,\n    \"ownerId\" TEXT NOT NULL,\n    \"createdAt\" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
             \"updatedAt\" TIMESTAMP(3) NOT NULL,\n\n    CONSTRAINT \"Model{i}_pkey\" PRIMARY KEY (\"id\")\n);\n\n\
             -- CreateIndex\nCREATE UNIQUE INDEX \"Model{i}_email_key\" ON \"Model{i}\"(\"email\");\n\n\
             -- CreateIndex\nCREATE INDEX \"Model{i}_ownerId_createdAt_idx\" ON \"Model{i}\"(\"ownerId\", \"createdAt\");\n\n\
             -- AddForeignKey\nALTER TABLE \"Model{i}\" ADD CONSTRAINT \"Model{i}_ownerId_fkey\" FOREIGN KEY (\"ownerId\") \
             REFERENCES \"User\"(\"id\") ON DELETE RESTRICT ON UPDATE CASCADE;\n\n\
             -- AlterTable\nALTER TABLE \"User\" ADD COLUMN \"model{i}Count\" INTEGER NOT NULL DEFAULT 0;\n\n\
             -- CreateIndex\nCREATE INDEX \"User_model{i}Count_idx\" ON \"User\"(\"model{i}Count\");\n\n"
        ));
        i += 1;
    }
    sql
}

fn migration(target_bytes: usize) -> String {
    let mut sql = schema(target_bytes * 6 / 100);
    let mut batch = 0;
    while sql.len() < target_bytes {
        sql.push_str("INSERT INTO \"Country\" (\"id\", \"code\", \"name\", \"population\", \"createdAt\") VALUES\n");
        for j in 0..1000 {
            let end = if j == 999 { ";" } else { "," };
            sql.push_str(&format!(
                "    ('c{batch}_{j}', 'C{j:03}', 'Country number {j} of batch {batch}', {}, '2025-01-01 00:00:00'){end}\n",
                batch * 1000 + j
            ));
        }
        batch += 1;
    }
    sql
}

/// One run of a command: its wall time, CPU time (user and system, all threads), peak resident
/// memory and exit code; None as the code when it was stopped after [`GIVE_UP_AFTER`].
struct Run {
    wall: Duration,
    cpu: Duration,
    peak_kb: Option<u64>,
    code: Option<i32>,
}

/// Runs `program args` from this bench started again as its parent, so that the parent's
/// `getrusage(RUSAGE_CHILDREN)` is that one process's peak memory. Its stdout goes to `out`,
/// its stderr to `out` with `.err` added.
fn measure(program: &Path, args: &[OsString], out: &Path) -> Result<Run, String> {
    let me = std::env::current_exe().map_err(|e| format!("this bench's path: {e}"))?;
    let report = Command::new(me)
        .arg(MEASURE)
        .arg(out)
        .arg(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&report.stdout);
    let mut fields = text.split_whitespace();
    let mut next = || fields.next().and_then(|f| f.parse::<i64>().ok());
    match (next(), next(), next(), next()) {
        (Some(micros), Some(cpu), Some(kb), Some(code)) => Ok(Run {
            wall: Duration::from_micros(micros.unsigned_abs()),
            cpu: Duration::from_micros(cpu.unsigned_abs()),
            peak_kb: u64::try_from(kb).ok().filter(|&kb| kb > 0),
            code: i32::try_from(code).ok().filter(|&c| c >= 0),
        }),
        _ => Err(format!(
            "{} did not run: {}",
            program.display(),
            text.trim()
        )),
    }
}

/// The measuring parent: starts the command, waits (stopping it after [`GIVE_UP_AFTER`]),
/// prints `wall_micros cpu_micros peak_kb exit_code`, the code -1 when it was stopped.
fn measure_child(args: &[OsString]) -> i32 {
    let [out, program, rest @ ..] = args else {
        println!("usage: {MEASURE} OUT PROGRAM [ARGS...]");
        return 2;
    };
    let mut err_path = out.clone();
    err_path.push(".err");
    let (Ok(stdout), Ok(stderr)) = (File::create(out), File::create(&err_path)) else {
        println!("cannot create {}", Path::new(out).display());
        return 2;
    };
    let started = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn();
    let Ok(mut child) = child else {
        println!("cannot start {}", Path::new(program).display());
        return 2;
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // This process exits as soon as the child is reaped, so the pid cannot have been reused
    // when the timer fires.
    std::thread::spawn(move || {
        std::thread::sleep(GIVE_UP_AFTER);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let status = child.wait();
    let wall = started.elapsed();
    // The only child this process had is the one measured; Linux reports kilobytes.
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    let (cpu, peak) = usage.map_or((0, 0), |u| {
        (micros(u.user_time()) + micros(u.system_time()), u.max_rss())
    });
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    println!("{} {cpu} {peak} {code}", wall.as_micros());
    0
}

/// What several runs of one command came to.
struct Measured {
    median: Duration,
    /// The median CPU time: the work done, which a busy machine disturbs less than the wall
    /// time.
    cpu: Duration,
    /// The largest of the runs.
    peak_kb: Option<u64>,
    /// The last run's; None when a run was stopped (then it was not run again).
    code: Option<i32>,
}

/// One command to measure: program, arguments, where its output goes.
type Job = (PathBuf, Vec<OsString>, PathBuf);

/// `n` runs of each job, taken in turns (a run of each, then again), so that a change in the
/// load of a shared machine falls on every job alike rather than on whichever ran then.
fn interleaved(jobs: &[Job], n: usize) -> Result<Vec<Measured>, String> {
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); jobs.len()];
    let mut cpus: Vec<Vec<Duration>> = vec![Vec::new(); jobs.len()];
    let mut peaks: Vec<Option<u64>> = vec![None; jobs.len()];
    let mut codes: Vec<Option<i32>> = vec![Some(0); jobs.len()];
    for _ in 0..n {
        for (i, (program, args, out)) in jobs.iter().enumerate() {
            if codes[i].is_none() {
                continue;
            }
            let r = measure(program, args, out)?;
            peaks[i] = peaks[i].max(r.peak_kb);
            codes[i] = r.code;
            walls[i].push(r.wall);
            cpus[i].push(r.cpu);
        }
    }
    // A stopped job has one run, the stopped one.
    let median = |mut t: Vec<Duration>| {
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    };
    Ok(walls
        .into_iter()
        .zip(cpus)
        .zip(peaks)
        .zip(codes)
        .map(|(((w, c), peak_kb), code)| Measured {
            median: median(w),
            cpu: median(c),
            peak_kb,
            code,
        })
        .collect())
}

/// The median time of `n` calls of `f`, in this process.
fn in_process(n: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    t.sort();
    t[n / 2]
}

/// squawk-cli in a virtualenv of its own, made on first use.
fn squawk() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("squawk-cli-2.68.0");
    let bin = venv.join("bin/squawk");
    let version = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if version(&bin).is_some_and(|v| v.contains("2.68.0")) {
        return Ok(bin);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv {} failed: {}",
            venv.display(),
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", SQUAWK])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.status.success() {
        return Err(format!(
            "pip install {SQUAWK} failed: {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    match version(&bin) {
        Some(v) if v.contains("2.68.0") => Ok(bin),
        other => Err(format!("{} reports version {other:?}", bin.display())),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn peak_mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0))
}

/// The median, or that the run was stopped.
fn took(median: Duration, code: Option<i32>) -> String {
    match code {
        Some(_) => ms(median),
        None => format!("> {} s, stopped", GIVE_UP_AFTER.as_secs()),
    }
}

/// Statements and findings in pgdeck's JSON output.
fn counts(json_out: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(json_out).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let file = &v["files"][0];
    let len = |key: &str| file[key].as_array().map_or(0, Vec::len);
    (len("statements"), len("findings"))
}

/// Medians by shape, size and format.
type Medians<'a> = std::collections::HashMap<(&'a str, &'a str, &'a str), Measured>;

/// The 5 MB / 0.5 MB ratios of the wall and of the CPU time of a shape and format, when both
/// sizes finished.
fn ratio(medians: &Medians<'_>, shape: &str, format: &str) -> Option<(f64, f64)> {
    let small = medians.get(&(shape, "0.5 MB", format))?;
    let large = medians.get(&(shape, "5 MB", format))?;
    small.code.and(large.code)?;
    let r = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    Some((r(small.median, large.median), r(small.cpu, large.cpu)))
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == MEASURE) {
        std::process::exit(measure_child(&args[2..]));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pgdeck = Path::new(env!("CARGO_BIN_EXE_pgdeck"));
    let mut files = Vec::new();
    for shape in &SHAPES {
        for (size, bytes) in SIZES {
            let path = dir.path().join(format!(
                "{}-{}.sql",
                shape.name.replace(' ', "-"),
                size.replace(' ', "")
            ));
            std::fs::write(&path, (shape.make)(bytes)).expect("write the migration");
            files.push((shape, size, path));
        }
    }

    println!(
        "\npgdeck lint --offline: median of {RUNS} runs, largest peak RSS\n\
         shape       size    format  statements  findings   output   median wall   median CPU     peak RSS"
    );
    let mut medians = Medians::new();
    let mut missed = Vec::new();
    for shape in &SHAPES {
        for format in FORMATS {
            // Both sizes of a shape in turns: their ratio is the point.
            let sized: Vec<_> = files
                .iter()
                .filter(|(s, _, _)| s.name == shape.name)
                .collect();
            let jobs: Vec<Job> = sized
                .iter()
                .map(|(_, size, path)| {
                    let args = ["lint", "--offline", "--format", format]
                        .iter()
                        .map(OsString::from)
                        .chain([path.clone().into_os_string()])
                        .collect();
                    let out = dir
                        .path()
                        .join(format!("out-{format}-{}", size.replace(' ', "")));
                    (pgdeck.to_owned(), args, out)
                })
                .collect();
            let measured = interleaved(&jobs, RUNS).unwrap_or_else(|e| panic!("{e}"));
            for (((_, size, path), (_, _, out)), m) in sized.iter().zip(&jobs).zip(&measured) {
                if m.code
                    .is_some_and(|c| c == i32::from(exit::USAGE) || c == i32::from(exit::RUNTIME))
                {
                    let err = std::fs::read_to_string(format!("{}.err", out.display()))
                        .unwrap_or_default();
                    panic!(
                        "pgdeck lint exited {:?} on {}: {err}",
                        m.code,
                        path.display()
                    );
                }
                let output = std::fs::metadata(out).map_or(0, |m| m.len());
                let (statements, findings) = match format {
                    "json" => {
                        let (s, f) = counts(out);
                        (s.to_string(), f.to_string())
                    }
                    _ => (String::new(), String::new()),
                };
                println!(
                    "{:<10} {size:>6}   {format:<7} {statements:>10} {findings:>9} {:>6.1} MB {:>13} {:>12} {:>12}",
                    shape.name,
                    output as f64 / (1 << 20) as f64,
                    took(m.median, m.code),
                    ms(m.cpu),
                    peak_mb(m.peak_kb)
                );
                if shape.targeted && *size == "5 MB" {
                    if m.code.is_none() || m.median > TARGET_TIME {
                        missed.push(format!(
                            "{} 5 MB {format}: {} > {} ms",
                            shape.name,
                            took(m.median, m.code),
                            TARGET_TIME.as_millis()
                        ));
                    }
                    if m.peak_kb
                        .is_some_and(|kb| kb as f64 / 1024.0 > TARGET_PEAK_MB)
                    {
                        missed.push(format!(
                            "{} 5 MB {format}: {} peak > {TARGET_PEAK_MB} MB",
                            shape.name,
                            peak_mb(m.peak_kb)
                        ));
                    }
                }
            }
            for ((_, size, _), m) in sized.iter().zip(measured) {
                medians.insert((shape.name, *size, format), m);
            }
        }
    }

    println!(
        "\n5 MB / 0.5 MB, 10x the input, of the wall time (of the CPU time; target: at most {TARGET_RATIO}x)"
    );
    for shape in &SHAPES {
        let mut line = format!("{:<10}", shape.name);
        for format in FORMATS {
            match ratio(&medians, shape.name, format) {
                Some((wall, cpu)) => {
                    // The work done decides: the wall time of a run on a shared machine also
                    // measures whoever else ran then.
                    if cpu > TARGET_RATIO {
                        missed.push(format!(
                            "{} {format}: {cpu:.1}x CPU time > {TARGET_RATIO}x",
                            shape.name
                        ));
                    }
                    line.push_str(&format!("   {format} {wall:.1}x ({cpu:.1}x)"));
                }
                None => line.push_str(&format!("   {format} -")),
            }
        }
        println!("{line}");
    }

    // Where a debug build's time goes: squawk's parser and rules are the floor under pgdeck's
    // lint (it runs the rules beside its own validation pass, then its analysis).
    println!(
        "\nin this process, this build: median of 3\n\
         shape       size    squawk parse + rules   pgdeck lint (lint_sql)"
    );
    let settings = LintSettings::default();
    for (shape, size, path) in files.iter().filter(|(_, size, _)| *size == "5 MB") {
        let sql = std::fs::read_to_string(path).expect("read the migration");
        let floor = in_process(3, || {
            let parse = SourceFile::parse(&sql);
            let mut linter = Linter::with_rules(&[], &[]);
            linter.settings.assume_in_transaction = true;
            std::hint::black_box(linter.lint(&parse, &sql));
        });
        let lint = in_process(3, || {
            std::hint::black_box(lint_sql("bench.sql", &sql, &settings, &Sizes::new()));
        });
        println!(
            "{:<10} {size:>6}   {:>20}   {:>22}",
            shape.name,
            ms(floor),
            ms(lint)
        );
    }

    match squawk() {
        Err(why) => println!("\nsquawk CLI not measured: {why}"),
        Ok(bin) => {
            println!(
                "\nsquawk {} --assume-in-transaction --reporter R, on the same files: median of {SQUAWK_RUNS} runs\n\
                 shape       size    reporter      median wall   median CPU     peak RSS",
                SQUAWK.trim_start_matches("squawk-cli==")
            );
            let mut squawk_medians = Medians::new();
            for shape in &SHAPES {
                for reporter in REPORTERS {
                    let sized: Vec<_> = files
                        .iter()
                        .filter(|(s, _, _)| s.name == shape.name)
                        .collect();
                    // pgdeck assumes the transaction it runs each migration in; so is squawk
                    // told to.
                    let jobs: Vec<Job> = sized
                        .iter()
                        .map(|(_, size, path)| {
                            let args = ["--assume-in-transaction", "--reporter", reporter]
                                .iter()
                                .map(OsString::from)
                                .chain([path.clone().into_os_string()])
                                .collect();
                            let out = dir
                                .path()
                                .join(format!("squawk-{reporter}-{}", size.replace(' ', "")));
                            (bin.clone(), args, out)
                        })
                        .collect();
                    match interleaved(&jobs, SQUAWK_RUNS) {
                        Ok(measured) => {
                            for ((_, size, _), m) in sized.iter().zip(measured) {
                                println!(
                                    "{:<10} {size:>6}   {reporter:<7} {:>17} {:>12} {:>12}",
                                    shape.name,
                                    took(m.median, m.code),
                                    ms(m.cpu),
                                    peak_mb(m.peak_kb)
                                );
                                squawk_medians.insert((shape.name, *size, reporter), m);
                            }
                        }
                        Err(e) => println!("{:<10} {reporter:<7} failed: {e}", shape.name),
                    }
                }
            }
            println!("\nsquawk 5 MB / 0.5 MB, of the wall time (of the CPU time)");
            for shape in &SHAPES {
                let mut line = format!("{:<10}", shape.name);
                for reporter in REPORTERS {
                    match ratio(&squawk_medians, shape.name, reporter) {
                        Some((wall, cpu)) => {
                            line.push_str(&format!("   {reporter} {wall:.1}x ({cpu:.1}x)"))
                        }
                        None => line.push_str(&format!("   {reporter} -")),
                    }
                }
                println!("{line}");
            }
        }
    }

    if missed.is_empty() {
        println!(
            "\nevery target met: the 5 MB migration in at most {} ms and {TARGET_PEAK_MB} MB in each format, at most {TARGET_RATIO}x for 10x the input",
            TARGET_TIME.as_millis()
        );
    } else {
        println!("\ntargets MISSED:");
        for m in missed {
            println!("  {m}");
        }
    }
}
