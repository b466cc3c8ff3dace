//! Where manifests come from: files, directories (recursive, lexical order), `-` for standard
//! input, and `https://` URLs.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One input stream, named as the user will recognise it in errors.
pub struct Input {
    pub name: String,
    pub text: String,
}

pub fn read_all(arguments: &[String]) -> anyhow::Result<Vec<Input>> {
    if arguments.is_empty() {
        bail!("please specify a kubernetes resource file");
    }
    let mut inputs = Vec::new();
    for argument in arguments {
        if argument == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            inputs.push(Input { name: "<stdin>".into(), text });
        } else if let Some((scheme, _)) = argument.split_once("://") {
            if scheme != "https" {
                bail!("{argument}: only HTTPS URLs are allowed");
            }
            inputs.push(Input { name: argument.clone(), text: fetch(argument)? });
        } else {
            let path = Path::new(argument);
            let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {argument}"))?;
            if metadata.is_dir() {
                let mut files = Vec::new();
                walk(path, &mut files)?;
                for file in files {
                    inputs.push(Input { name: file.display().to_string(), text: read_file(&file)? });
                }
            } else {
                inputs.push(Input { name: argument.clone(), text: read_file(path)? });
            }
        }
    }
    Ok(inputs)
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))
}

/// Every regular file below `dir`, in lexical order of the full path.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, files)?;
        } else if entry.is_file() {
            files.push(entry);
        }
    }
    Ok(())
}

fn fetch(url: &str) -> anyhow::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().with_context(|| format!("unable to read URL {url:?}"))?;
    let status = response.status();
    if status != 200 {
        bail!("unable to read URL {url:?}, server reported {status}, status code={}", status.as_u16());
    }
    response.body_mut().read_to_string().with_context(|| format!("unable to read URL {url:?}"))
}
