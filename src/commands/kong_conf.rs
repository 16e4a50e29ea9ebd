//! `plugtap kong-conf`: the kong.conf lines that put plugtap's proxy
//! between Kong and a pluginserver as a drop-in wrapper.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use plugtap::exit::Outcome;

pub const EXAMPLES: &str = "\
Examples:
  # Python: Kong connects to py.sock; the real server listens on py-real.sock.
  plugtap kong-conf --name py --listen /usr/local/kong/py.sock \\
      --upstream /usr/local/kong/py-real.sock --record /tmp/py.jsonl \\
      --query-cmd 'kong-python-pluginserver -d /plugins --dump-all-plugins' -- \\
      kong-python-pluginserver -d /plugins -p /usr/local/kong --socket-name py-real.sock

  # The same as environment variables (docker):
  plugtap kong-conf --env --name py ... -- ...";

/// Arguments of `kong-conf`.
#[derive(Debug, Args)]
pub struct KongConfArgs {
    /// The pluginserver's name in `pluginserver_names`.
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// The socket Kong connects to (plugtap listens there).
    #[arg(long, value_name = "PATH")]
    pub listen: PathBuf,

    /// The socket the real server listens on (its command must use it).
    #[arg(long, value_name = "PATH")]
    pub upstream: PathBuf,

    /// Where plugtap records.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// `--redact` rules for the proxy (repeatable).
    #[arg(long, value_name = "RULE")]
    pub redact: Vec<String>,

    /// The server's query command (Kong 3.9+ requires one).
    #[arg(long, value_name = "CMD")]
    pub query_cmd: Option<String>,

    /// The plugtap binary Kong should run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub plugtap: Option<PathBuf>,

    /// Print `KONG_...` environment variables instead of kong.conf lines.
    #[arg(long)]
    pub env: bool,

    /// The real server's command line, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// Quotes a word for `/bin/sh` when it needs it.
pub fn sh_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub fn kong_conf(args: KongConfArgs) -> anyhow::Result<Outcome> {
    let exe = match args.plugtap {
        Some(p) => p,
        None => std::env::current_exe().context("cannot find plugtap's own path")?,
    };
    let mut words = vec![
        exe.display().to_string(),
        "proxy".into(),
        "--listen".into(),
        args.listen.display().to_string(),
        "--upstream".into(),
        args.upstream.display().to_string(),
    ];
    if let Some(r) = &args.record {
        words.extend(["--record".into(), r.display().to_string()]);
    }
    for rule in &args.redact {
        words.extend(["--redact".into(), rule.clone()]);
    }
    words.push("--".into());
    words.extend(args.cmd.iter().cloned());
    let start_cmd = words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    // Kong lowercases names and turns dashes into underscores in keys.
    let key = args.name.to_lowercase().replace('-', "_");
    let mut lines = vec![
        ("pluginserver_names".to_owned(), Some(args.name.clone())),
        (
            format!("pluginserver_{key}_socket"),
            Some(args.listen.display().to_string()),
        ),
        (format!("pluginserver_{key}_start_cmd"), Some(start_cmd)),
        (
            format!("pluginserver_{key}_query_cmd"),
            args.query_cmd.clone(),
        ),
    ];
    if args.query_cmd.is_none() {
        tracing::warn!(
            "no --query-cmd: Kong 3.9+ refuses to start without pluginserver_{key}_query_cmd \
             (the server's dump command, e.g. `... --dump-all-plugins`)"
        );
    }
    if !args.env {
        println!(
            "# plugtap between Kong and pluginserver `{}`: Kong connects to {}, plugtap forwards to {}",
            args.name,
            args.listen.display(),
            args.upstream.display()
        );
    }
    for (k, v) in lines.drain(..) {
        match (args.env, v) {
            (false, Some(v)) => println!("{k} = {v}"),
            (false, None) => println!("# {k} = <the server's query command>"),
            (true, Some(v)) => println!("KONG_{}={}", k.to_uppercase(), sh_quote(&v)),
            (true, None) => println!("# KONG_{}=<the server's query command>", k.to_uppercase()),
        }
    }
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(sh_quote("$[3][0].Config"), "'$[3][0].Config'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
