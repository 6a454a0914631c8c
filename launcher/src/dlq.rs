//! `warble dlq`: the operator's tool for the dead-letter stream.
//!
//! A consumer (fanout-svc, notify-svc, media-svc) that fails an event
//! `consumer.max_attempts` times writes a `DeadLetter` record (the event,
//! its group, the attempts and the last error) to the dead-letter stream and
//! moves on. This command lists and shows those records, replays them (the
//! event goes back on the stream it came from, and the record is removed),
//! or drops them.
//!
//! A replayed event reaches every consumer group of its stream again, not
//! only the one that gave up: consumers apply events idempotently by their
//! `event_id` (as they do for any redelivery), so the groups that had
//! applied it are unaffected.
//!
//! It reads the event log the services write: Redis (`backend = "redis"`,
//! `redis.*`, as the services' event-stream keys), or the embedded log in
//! `warble dev`'s `data_dir` while `warble dev` is stopped (the database is
//! one process's at a time).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use warble_mesh::backends::RedisConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::consumer::DEAD_LETTER_STREAM;
use warble_mesh::event_log::{Delivery, EmbeddedEventLog, EventId, EventLog, RedisEventLog};
use warble_mesh::time::iso8601;
use warble_proto::events::v1::{DeadLetter, Event};

/// How `warble dlq` is used.
pub const USAGE: &str = "usage: warble dlq <command> [--config <file.toml>]\n\
  list   [--group <g>] [--limit <n>] [--after <id>]   dead letters, oldest first (50 by default)\n\
  show   <id>                                       one dead letter: its event, group, attempts, error\n\
  replay <id>... | --all [--group <g>]              put events back on their stream, remove the letters\n\
  drop   <id>... | --all [--group <g>]              remove dead letters\n\
  The event log is Redis (WARBLE_BACKEND=redis, WARBLE_REDIS__URL=...) or warble dev's\n\
  embedded data_dir (the default, ./data/dev, while warble dev is stopped).";

/// Largest `--limit` of `list`.
const MAX_LIST: usize = 1_000;
/// Entries read per round trip.
const PAGE: usize = 500;

/// Where `warble dlq` finds the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DlqBackend {
    /// `warble dev`'s database in `data_dir`.
    #[default]
    Embedded,
    /// The services' Redis event log (`redis.*`).
    Redis,
}

/// `warble dlq`'s configuration (defaults < `--config` file < `WARBLE_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqConfig {
    /// `embedded` or `redis`.
    pub backend: DlqBackend,
    /// `warble dev`'s data directory (embedded backend).
    pub data_dir: PathBuf,
    /// The Redis holding the event log (redis backend).
    pub redis: RedisConfig,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            backend: DlqBackend::Embedded,
            data_dir: PathBuf::from("./data/dev"),
            redis: RedisConfig::default(),
        }
    }
}

impl ServiceConfig for DlqConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.backend {
            DlqBackend::Redis => self.redis.validate("redis"),
            DlqBackend::Embedded if self.data_dir.as_os_str().is_empty() => {
                Err(ConfigError::invalid("data_dir", "must not be empty"))
            }
            DlqBackend::Embedded => Ok(()),
        }
    }
}

/// One `warble dlq` command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `list`.
    List {
        /// Only this consumer group's letters.
        group: Option<String>,
        /// At most this many.
        limit: usize,
        /// Only letters after this id (the previous page's last).
        after: Option<EventId>,
    },
    /// `show <id>`.
    Show(EventId),
    /// `replay`.
    Replay(Selection),
    /// `drop`.
    Drop(Selection),
}

/// Which letters `replay` and `drop` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids.
    Ids(Vec<EventId>),
    /// Every letter, or every letter of one group.
    All {
        /// Only this consumer group's letters.
        group: Option<String>,
    },
}

/// Parses the arguments after `warble dlq`; returns the command and the
/// `--config` file, if any. Errors are usage errors.
pub fn parse(args: &[String]) -> Result<(Command, Option<PathBuf>), String> {
    let mut words = Vec::new();
    let (mut group, mut limit, mut after, mut all, mut config) = (None, 50, None, false, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--group" => group = Some(value("--group")?),
            "--limit" => {
                let text = value("--limit")?;
                limit = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| format!("--limit must be 1 to {MAX_LIST}, not `{text}`"))?;
            }
            "--after" => after = Some(parse_id(&value("--after")?)?),
            "--all" => all = true,
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            word => words.push(word.to_owned()),
        }
    }
    let Some((verb, ids)) = words.split_first() else {
        return Err("a command is required: list, show, replay or drop".into());
    };
    let ids = ids
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let selection = || match (all, ids.is_empty()) {
        (true, true) => Ok(Selection::All {
            group: group.clone(),
        }),
        (false, false) if group.is_none() => Ok(Selection::Ids(ids.clone())),
        (false, false) => Err("--group goes with --all, not with ids".to_owned()),
        (true, false) => Err("give ids or --all, not both".to_owned()),
        (false, true) => Err(format!("{verb} needs dead-letter ids or --all")),
    };
    let command = match verb.as_str() {
        "list" if ids.is_empty() && !all => Command::List {
            group: group.clone(),
            limit,
            after,
        },
        "list" => return Err("list takes no ids and no --all".into()),
        "show" => match ids.as_slice() {
            [id] if !all && group.is_none() => Command::Show(*id),
            _ => return Err("show takes exactly one dead-letter id".into()),
        },
        "replay" => Command::Replay(selection()?),
        "drop" => Command::Drop(selection()?),
        other => return Err(format!("unknown command `{other}`")),
    };
    Ok((command, config))
}

fn parse_id(text: &str) -> Result<EventId, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a dead-letter id (like 1764750000000-0)"))
}

/// Opens the event log `config` names.
pub async fn open(config: &DlqConfig) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match config.backend {
        DlqBackend::Redis => Arc::new(
            RedisEventLog::connect(&config.redis)
                .await
                .context("cannot reach the event log's Redis (redis.*)")?,
        ),
        DlqBackend::Embedded => {
            let database =
                warble_mesh::embedded::open_shared(&config.data_dir).with_context(|| {
                    format!(
                        "cannot open the embedded event log in {} (is `warble dev` running? \
                     it holds the database: stop it first)",
                        config.data_dir.display()
                    )
                })?;
            Arc::new(EmbeddedEventLog::open(database).context("cannot open the event log")?)
        }
    })
}

/// Runs `command` against `log`, writing what it did to `out`.
pub async fn run(log: &dyn EventLog, command: Command, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        Command::List {
            group,
            limit,
            after,
        } => {
            let (letters, more) = letters(log, group.as_deref(), after, limit).await?;
            if letters.is_empty() {
                writeln!(out, "no dead letters")?;
                return Ok(());
            }
            for (id, letter) in &letters {
                writeln!(
                    out,
                    "{id}  {}  group={}  attempts={}  {}  error: {}",
                    iso8601(letter.dead_lettered_at_ms),
                    letter.consumer_group,
                    letter.attempts,
                    describe(&letter.payload),
                    one_line(&letter.last_error, 160)
                )?;
            }
            if more && let Some((last, _)) = letters.last() {
                writeln!(out, "more: warble dlq list --after {last}")?;
            }
        }
        Command::Show(id) => {
            let letter = find(log, id).await?;
            writeln!(out, "dead letter   {id}")?;
            writeln!(out, "written at    {}", iso8601(letter.dead_lettered_at_ms))?;
            writeln!(out, "group         {}", letter.consumer_group)?;
            writeln!(out, "attempts      {}", letter.attempts)?;
            writeln!(
                out,
                "source        {} entry {} (key {})",
                letter.source_stream, letter.source_entry_id, letter.key
            )?;
            writeln!(out, "event         {}", describe(&letter.payload))?;
            if let Ok(event) = Event::decode(letter.payload.as_slice()) {
                writeln!(out, "payload       {:?}", event.payload)?;
            }
            writeln!(out, "last error    {}", letter.last_error)?;
        }
        Command::Replay(selection) => {
            let chosen = select(log, selection).await?;
            for (id, letter) in &chosen {
                let requeued = log
                    .append(&letter.source_stream, letter.key, &letter.payload)
                    .await
                    .with_context(|| format!("cannot put {id} back on {}", letter.source_stream))?;
                // Removed only once its event is back on the stream: a crash
                // in between leaves a letter to drop, never a lost event.
                log.delete(DEAD_LETTER_STREAM, &[*id]).await?;
                writeln!(
                    out,
                    "replayed {id} ({}, group {}) as {} entry {requeued}",
                    describe(&letter.payload),
                    letter.consumer_group,
                    letter.source_stream
                )?;
            }
            writeln!(out, "{} replayed", chosen.len())?;
        }
        Command::Drop(selection) => {
            let chosen = select(log, selection).await?;
            let ids: Vec<EventId> = chosen.iter().map(|(id, _)| *id).collect();
            for chunk in ids.chunks(PAGE) {
                log.delete(DEAD_LETTER_STREAM, chunk).await?;
            }
            for (id, letter) in &chosen {
                writeln!(
                    out,
                    "dropped {id} ({}, group {})",
                    describe(&letter.payload),
                    letter.consumer_group
                )?;
            }
            writeln!(out, "{} dropped", chosen.len())?;
        }
    }
    Ok(())
}

/// Up to `limit` letters after `after` (of `group`, when given), oldest
/// first, and whether more follow.
async fn letters(
    log: &dyn EventLog,
    group: Option<&str>,
    mut after: Option<EventId>,
    limit: usize,
) -> anyhow::Result<(Vec<(EventId, DeadLetter)>, bool)> {
    let mut found = Vec::new();
    loop {
        let page = read_page(log, after).await?;
        let Some(last) = page.last() else {
            return Ok((found, false));
        };
        after = Some(last.id);
        for entry in page {
            let letter = decode(&entry)?;
            if group.is_some_and(|group| group != letter.consumer_group) {
                continue;
            }
            if found.len() == limit {
                return Ok((found, true));
            }
            found.push((entry.id, letter));
        }
    }
}

/// The letters a selection names; an id that is not a dead letter is an
/// error before anything changes.
async fn select(
    log: &dyn EventLog,
    selection: Selection,
) -> anyhow::Result<Vec<(EventId, DeadLetter)>> {
    match selection {
        Selection::All { group } => Ok(letters(log, group.as_deref(), None, usize::MAX).await?.0),
        Selection::Ids(ids) => {
            let mut chosen = Vec::with_capacity(ids.len());
            for id in ids {
                chosen.push((id, find(log, id).await?));
            }
            Ok(chosen)
        }
    }
}

async fn find(log: &dyn EventLog, id: EventId) -> anyhow::Result<DeadLetter> {
    let before = if id.seq > 0 {
        Some(EventId {
            ms: id.ms,
            seq: id.seq - 1,
        })
    } else if id.ms > 0 {
        Some(EventId {
            ms: id.ms - 1,
            seq: u64::MAX,
        })
    } else {
        None
    };
    let entry = log
        .read_after(DEAD_LETTER_STREAM, before, 1, Duration::ZERO)
        .await?
        .into_iter()
        .next()
        .filter(|entry| entry.id == id);
    match entry {
        Some(entry) => decode(&entry),
        None => bail!("no dead letter {id} (see `warble dlq list`)"),
    }
}

async fn read_page(log: &dyn EventLog, after: Option<EventId>) -> anyhow::Result<Vec<Delivery>> {
    log.read_after(DEAD_LETTER_STREAM, after, PAGE, Duration::ZERO)
        .await
        .context("cannot read the dead-letter stream")
}

fn decode(entry: &Delivery) -> anyhow::Result<DeadLetter> {
    DeadLetter::decode(entry.payload.as_slice())
        .with_context(|| format!("dead-letter entry {} is not a DeadLetter record", entry.id))
}

/// `TweetCreated event 123`, or what makes the payload unreadable.
fn describe(payload: &[u8]) -> String {
    match Event::decode(payload) {
        Ok(Event {
            event_id,
            payload: Some(payload),
            ..
        }) => {
            let debug = format!("{payload:?}");
            let kind = debug.split('(').next().unwrap_or("event");
            format!("{kind} event {event_id}")
        }
        Ok(Event { event_id, .. }) => format!("an event of no known kind (event {event_id})"),
        Err(_) => format!("undecodable payload ({} bytes)", payload.len()),
    }
}

/// `text` on one line, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse_and_mistakes_are_named() {
        let id: EventId = "17-3".parse().unwrap();
        assert_eq!(
            parse(&args("list --group fanout --limit 5")).unwrap().0,
            Command::List {
                group: Some("fanout".into()),
                limit: 5,
                after: None
            }
        );
        assert_eq!(parse(&args("show 17-3")).unwrap().0, Command::Show(id));
        assert_eq!(
            parse(&args("replay --all --group notify --config f.toml")).unwrap(),
            (
                Command::Replay(Selection::All {
                    group: Some("notify".into())
                }),
                Some(PathBuf::from("f.toml"))
            )
        );
        assert_eq!(
            parse(&args("drop 17-3")).unwrap().0,
            Command::Drop(Selection::Ids(vec![id]))
        );
        for (bad, says) in [
            ("", "a command is required"),
            ("replay", "needs dead-letter ids or --all"),
            ("drop 17-3 --all", "not both"),
            ("show 17", "not a dead-letter id"),
            ("list --limit 0", "--limit must be"),
            ("list --limit", "needs a value"),
            ("purge --all", "unknown command"),
            ("list --force", "unknown option"),
            ("replay 17-3 --group fanout", "--group goes with --all"),
        ] {
            let error = parse(&args(bad)).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn describes_events_by_kind_and_survives_garbage() {
        use warble_proto::events::v1::{TweetCreated, event::Payload};
        let event = Event {
            event_id: 9,
            payload: Some(Payload::TweetCreated(TweetCreated::default())),
            ..Event::default()
        };
        assert_eq!(describe(&event.encode_to_vec()), "TweetCreated event 9");
        assert!(describe(&[0xff, 0xff, 0xff]).starts_with("undecodable payload"));
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
