//! How the command line names the library's request fields, and errors on one line in those
//! names: the library refuses `steps must be at least 1`, the command line says
//! `--steps must be at least 1`.
use crate::pipelines::request::{Param, RequestError};

/// A command's flag for each request field.
pub type FlagNames = fn(Param) -> String;

/// The flag of the field's name (`max_new_tokens` is `--max-new-tokens`).
pub fn flag(p: Param) -> String {
    format!("--{}", p.name().replace('_', "-"))
}

/// The field's own name, for commands that have no flag for it.
pub fn api_name(p: Param) -> String {
    p.name().to_string()
}

/// The error and its causes on one line, as `{e:#}` writes them, a refused request worded with
/// `names`.
pub fn one_line(e: &anyhow::Error, names: FlagNames) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|cause| match cause.downcast_ref::<RequestError>() {
            Some(r) => r.message(names),
            None => cause.to_string(),
        })
        .collect();
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn refused_requests_name_the_flags_anywhere_in_the_chain() {
        let e: anyhow::Result<()> = Err(RequestError::BelowOne(Param::MaxNewTokens).into());
        let e = e.context("photo.png").context("1 of 2 failed").unwrap_err();
        assert_eq!(
            one_line(&e, flag),
            "1 of 2 failed: photo.png: --max-new-tokens must be at least 1"
        );
        assert_eq!(
            format!("{e:#}"),
            "1 of 2 failed: photo.png: max_new_tokens must be at least 1"
        );
        let plain = anyhow::anyhow!("line one\nline two").context("outer");
        assert_eq!(one_line(&plain, flag), "outer: line one line two");
    }
}
