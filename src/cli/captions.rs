//! `studioize captions stats CSV`: how rich a caption set is (lengths, vocabulary, duplicates,
//! frequent words), on the terminal and optionally as JSON.
use crate::captions::stats;
use crate::data::captions::read_csv;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Caption length distribution, vocabulary size, duplicate captions, most frequent words.
    Stats(StatsArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// A `file_name,text` captions CSV.
    pub csv: PathBuf,
    /// How many frequent words to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also write the statistics as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Stats(a) => {
            let rows = read_csv(&a.csv)?;
            let s = stats::compute(rows.iter().map(|r| r.text.as_str()), a.top);
            print!("{}", s.render());
            if let Some(path) = &a.json {
                let text = serde_json::to_string_pretty(&s).expect("stats serialise");
                crate::fsutil::write_atomic(path, (text + "\n").as_bytes())?;
            }
            Ok(())
        }
    }
}
