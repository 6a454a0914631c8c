//! The `warble-bench` command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::scenarios::{BackendKind, Options, Scenario};
use crate::stack::StackShape;

const USAGE: &str = "\
usage: warble-bench <scenario|all> [options]
       warble-bench plot [--results <dir>]
       warble-bench generate --users <n> [--seed <s>] --save-workload <file.json>

scenarios:
  fanout     deliveries/s into the embedded and Redis caches vs Redis's pipelined ZADD ceiling
  delivery   post-to-visible latency (p50/p99/max), authors of 100 and 10K followers
  read       hydrated homeTimeline(first: 20) at 1/16/64 clients vs trivial GraphQL and gRPC
  celebrity  home reads following 0/10/50 celebrities; a big celebrity's post latency
  mixed      60% home timelines, 30% user timelines, 10% posts
  scale      memory and fan-out cost as users grow; bytes per cached entry
  social     home reads with retweets: readers blocking 1,000 users vs none
  notify     likes applied/s by notify-svc; 20-group page reads; a 100,000-like group vs one like
  search     tweets indexed/s (vs tantivy alone); post-to-searchable; query and typeahead p99; bytes/tweet
  wide       home reads of a reader following 2,000 accounts vs one following 25
  media      uploads through the gateway vs object_store's own puts; a 1 MB image's latency
  overload   the mix open-loop at 0.5x and 3x capacity: admitted p99, refusals, no lost posts

options:
  --smoke                  seconds-long bounded sizes (what CI runs)
  --out <file.json>        JSON summary (default bench/results/<scenario>.json; smoke: <tmp>/warble-bench/)
  --concurrency <n,n,..>   closed-loop clients (read: 1,16,64)
  --rate <per-second>      open loop at this arrival rate instead of a closed loop
  --duration <seconds>     measuring time per step
  --users <n>              users in the generated graph (read, mixed, social, notify, search)
  --sizes <n,n,..>         user counts (scale)
  --followers <n,n,..>     follower counts of the measured authors (fanout, delivery; celebrity: one)
  --threshold <n>          celebrity threshold
  --posts <n>              posts per measured author
  --seed <n>               workload seed
  --workload <file.json>   replay a saved workload (read, mixed, scale)
  --save-workload <file>   save the generated workload
  --backend <list>         embedded,redis (fanout: both; others: embedded)
  --redis-url <url>        use this Redis instead of starting a throwaway redis-server
  --data-dir <dir>         embedded database directory (default: a fresh temp dir)
  --calls <how>            in-process (default: services call each other inside the
                           process, as `warble dev` does) or network (loopback gRPC)
  --stack <shape>          dev (default: `warble dev`'s single process) or processes:
                           tweet-, graph-, timeline-, fanout-svc and the gateway as
                           separate processes (the binaries next to warble-bench; build
                           them with `cargo build --release --bins`), every internal call
                           over loopback gRPC, event log and timeline cache on two
                           throwaway redis-servers (read, delivery, mixed, celebrity, wide)
  --binaries <dir>         where --stack processes finds the service binaries
  --db-cache-mb <n>        `warble dev`'s data_cache_mb (the embedded database's page cache)
  --workers <n>            fanout-svc's consumer workers (default: its own, 4)
  --quiet                  no progress lines on stderr
";

/// Runs `warble-bench` with `args` (after the program name); returns the exit code.
pub async fn main(args: Vec<String>) -> i32 {
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("warble-bench: {error:#}");
            2
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(2);
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return Ok(0);
        }
        "plot" => {
            let flags = Flags::parse(rest)?;
            let dir = flags
                .value("results")
                .map_or_else(|| PathBuf::from("bench/results"), PathBuf::from);
            for written in crate::plot::write_all(&dir)? {
                println!("wrote {}", written.display());
            }
            return Ok(0);
        }
        "generate" => {
            let flags = Flags::parse(rest)?;
            let options = options(&flags)?;
            let path = options
                .save_workload
                .clone()
                .context("generate needs --save-workload <file.json>")?;
            let workload = crate::scenarios::workload_for(
                &options,
                crate::scenarios::standard_spec(&options),
            )?;
            println!(
                "wrote {} ({} users, {} follows, {} tweets)",
                path.display(),
                workload.usernames.len(),
                workload.follow_count(),
                workload.tweets.len()
            );
            return Ok(0);
        }
        _ => {}
    }
    let scenarios: Vec<Scenario> = if command == "all" {
        Scenario::ALL.to_vec()
    } else {
        vec![command.parse().context("try `warble-bench --help`")?]
    };
    let flags = Flags::parse(rest)?;
    let options = options(&flags)?;
    if options.shape == StackShape::Processes
        && let Some(single) = scenarios.iter().find(|s| !s.runs_as_processes())
    {
        anyhow::bail!(
            "`{}` runs on the single-process stack only; --stack processes runs {}",
            single.name(),
            Scenario::ALL
                .iter()
                .filter(|s| s.runs_as_processes())
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut failed = false;
    for scenario in scenarios {
        let out = match flags.value("out") {
            Some(path) if command != "all" => PathBuf::from(path),
            _ => default_out(scenario, options.smoke),
        };
        if options.progress {
            eprintln!("warble-bench {}: {}", scenario.name(), scenario.summary());
        }
        let report = scenario.run(&options).await?;
        print!("{}", report.render());
        report.write_json(&out)?;
        println!("summary written to {}", out.display());
        failed |= !report.checks.ok();
    }
    Ok(if failed { 1 } else { 0 })
}

fn default_out(scenario: Scenario, smoke: bool) -> PathBuf {
    if smoke {
        std::env::temp_dir()
            .join("warble-bench")
            .join(format!("{}-smoke.json", scenario.name()))
    } else if Path::new("bench/results").is_dir() {
        PathBuf::from(format!("bench/results/{}.json", scenario.name()))
    } else {
        PathBuf::from(format!("{}.json", scenario.name()))
    }
}

fn options(flags: &Flags) -> anyhow::Result<Options> {
    let list = |name: &str| -> anyhow::Result<Option<Vec<usize>>> {
        flags
            .value(name)
            .map(|value| {
                value
                    .split(',')
                    .map(|n| parse_count(n).with_context(|| format!("--{name} {value}")))
                    .collect()
            })
            .transpose()
    };
    let number = |name: &str| -> anyhow::Result<Option<u64>> {
        flags
            .value(name)
            .map(|value| {
                parse_count(value)
                    .map(|n| n as u64)
                    .with_context(|| format!("--{name} {value}"))
            })
            .transpose()
    };
    let backends = flags
        .value("backend")
        .map(|value| {
            value
                .split(',')
                .map(|name| match name.trim() {
                    "embedded" => Ok(BackendKind::Embedded),
                    "redis" => Ok(BackendKind::Redis),
                    other => Err(anyhow::anyhow!(
                        "unknown backend `{other}` (embedded, redis)"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(Options {
        smoke: flags.has("smoke"),
        open_rate: flags
            .value("rate")
            .map(|r| r.parse::<f64>().context("--rate"))
            .transpose()?,
        concurrency: list("concurrency")?,
        duration: flags
            .value("duration")
            .map(|d| {
                d.parse::<f64>()
                    .map(Duration::from_secs_f64)
                    .context("--duration")
            })
            .transpose()?,
        users: number("users")?.map(|n| n as usize),
        sizes: list("sizes")?,
        followers: list("followers")?,
        threshold: number("threshold")?,
        posts: number("posts")?.map(|n| n as usize),
        seed: number("seed")?,
        workload: flags.value("workload").map(PathBuf::from),
        save_workload: flags.value("save-workload").map(PathBuf::from),
        backends,
        redis_url: flags.value("redis-url").map(str::to_owned),
        data_dir: flags.value("data-dir").map(PathBuf::from),
        network_calls: match flags.value("calls") {
            None | Some("in-process") => false,
            Some("network") => true,
            Some(other) => anyhow::bail!("unknown --calls `{other}` (in-process, network)"),
        },
        shape: match flags.value("stack") {
            None | Some("dev") => StackShape::Dev,
            Some("processes") => {
                anyhow::ensure!(
                    !flags.has("calls") && !flags.has("redis-url") && !flags.has("backend"),
                    "--stack processes always calls over loopback gRPC and runs its own two \
                     Redis servers: drop --calls, --backend and --redis-url"
                );
                StackShape::Processes
            }
            Some(other) => anyhow::bail!("unknown --stack `{other}` (dev, processes)"),
        },
        binaries: flags.value("binaries").map(PathBuf::from),
        data_cache_mb: number("db-cache-mb")?,
        progress: !flags.has("quiet"),
        consumer_workers: number("workers")?
            .map(|n| u32::try_from(n).ok().filter(|n| (1..=256).contains(n)))
            .map(|n| n.context("--workers must be between 1 and 256"))
            .transpose()?,
    })
}

/// `10000`, `10_000`, `10k` and `1m` are all counts.
fn parse_count(text: &str) -> anyhow::Result<usize> {
    let text = text.trim().replace('_', "").to_ascii_lowercase();
    let (digits, factor) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1_000),
        None => match text.strip_suffix('m') {
            Some(digits) => (digits, 1_000_000),
            None => (text.as_str(), 1),
        },
    };
    Ok(digits.parse::<usize>().context("not a count")? * factor)
}

/// `--name value` and `--switch` flags.
struct Flags {
    pairs: Vec<(String, Option<String>)>,
}

const SWITCHES: [&str; 2] = ["smoke", "quiet"];

impl Flags {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut pairs = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .with_context(|| format!("unexpected argument `{arg}`"))?;
            if let Some((name, value)) = name.split_once('=') {
                pairs.push((name.to_owned(), Some(value.to_owned())));
            } else if SWITCHES.contains(&name) {
                pairs.push((name.to_owned(), None));
            } else {
                let value = args
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?;
                pairs.push((name.to_owned(), Some(value.clone())));
            }
        }
        const KNOWN: [&str; 24] = [
            "smoke",
            "quiet",
            "out",
            "concurrency",
            "rate",
            "duration",
            "users",
            "sizes",
            "followers",
            "threshold",
            "posts",
            "seed",
            "workload",
            "save-workload",
            "backend",
            "redis-url",
            "data-dir",
            "calls",
            "stack",
            "binaries",
            "db-cache-mb",
            "workers",
            "results",
            "help",
        ];
        if let Some((unknown, _)) = pairs
            .iter()
            .find(|(name, _)| !KNOWN.contains(&name.as_str()))
        {
            anyhow::bail!("unknown option --{unknown}");
        }
        Ok(Self { pairs })
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(key, _)| key == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_flags_counts_and_lists() {
        let flags = Flags::parse(&args(
            "--smoke --concurrency 1,16,64 --users 10k --backend=embedded,redis",
        ))
        .unwrap();
        let options = options(&flags).unwrap();
        assert!(options.smoke);
        assert_eq!(options.concurrency, Some(vec![1, 16, 64]));
        assert_eq!(options.users, Some(10_000));
        assert_eq!(
            options.backends,
            Some(vec![BackendKind::Embedded, BackendKind::Redis])
        );
        assert_eq!(parse_count("1m").unwrap(), 1_000_000);
        assert!(Flags::parse(&args("--bogus 1")).is_err());
        assert!(Flags::parse(&args("--users")).is_err());
        assert!(options_of("--backend mongo").is_err());
    }

    #[test]
    fn the_stack_shape_is_chosen_with_its_own_flags_only() {
        assert_eq!(options_of("").unwrap().shape, StackShape::Dev);
        assert_eq!(
            options_of("--stack processes").unwrap().shape,
            StackShape::Processes
        );
        assert!(options_of("--stack cluster").is_err());
        // Separate processes always call over the network, on their own Redis.
        assert!(options_of("--stack processes --calls network").is_err());
        assert!(options_of("--stack processes --backend redis").is_err());
    }

    fn options_of(text: &str) -> anyhow::Result<Options> {
        options(&Flags::parse(&args(text))?)
    }
}
