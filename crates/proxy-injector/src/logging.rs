//! Log flags shared by the long-running subcommands.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. info or proxy_injector_webhook=debug
    #[arg(long, default_value = "info")]
    log_level: String,
    #[arg(long, value_enum, default_value = "plain")]
    log_format: LogFormat,
}

impl LogArgs {
    pub fn init(&self) -> anyhow::Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| anyhow::anyhow!("invalid --log-level {:?}: {e}", self.log_level))?;
        let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Plain => subscriber.init(),
            LogFormat::Json => subscriber.json().flatten_event(true).init(),
        }
        Ok(())
    }
}
