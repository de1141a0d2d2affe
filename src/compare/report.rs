//! The self-contained HTML report: table, inlined PNG plots and the configuration.

use super::{CompareConfig, Row};
use crate::{Error, Result};
use base64::Engine as _;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Renders the report; the images are read and inlined as base64 data URIs, so the page makes
/// no requests.
pub fn render(
    config: &CompareConfig,
    rows: &[Row],
    target: f64,
    images: &[PathBuf],
) -> Result<String> {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>gradus compare</title>\n<style>\n\
         body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\n\
         table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;\
         text-align:right}th{background:#eee}td:first-child{text-align:left}\n\
         img{max-width:100%;border:1px solid #ddd;margin:1em 0}\n\
         pre{background:#f6f6f6;padding:1em;overflow-x:auto}\n</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(html, "<h1>Comparison of training methods</h1>");
    let _ = writeln!(
        html,
        "<p>Data <b>{}</b>, budget {} per run, seeds 0–{}. Numbers are mean ± sample standard \
         deviation over seeds. Time to target: mean wall time until the epoch training loss \
         first reached {target:.6}, over the seeds that reached it.</p>",
        escape(&config.base.data.source),
        escape(&config.budget.describe()),
        config.seeds - 1
    );
    html.push_str(
        "<table>\n<tr><th>method</th><th>train loss</th><th>test metric</th><th>wall s</th>\
         <th>evaluations</th><th>s to target</th><th>evaluations to target</th></tr>\n",
    );
    for r in rows {
        let (secs, evals) = match r.to_target {
            Some((s, e)) => (
                format!("{s:.2} ({}/{})", r.reached, r.seeds),
                format!("{e:.3e}"),
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{:.4} ± {:.4}</td><td>{} {:.4} ± {:.4}</td><td>{:.2}</td>\
             <td>{:.3e}</td><td>{secs}</td><td>{evals}</td></tr>",
            escape(&r.method),
            r.train_loss.0,
            r.train_loss.1,
            r.test_metric,
            r.test.0,
            r.test.1,
            r.wall_seconds,
            r.evaluations
        );
    }
    html.push_str("</table>\n<h2>Plots</h2>\n");
    for path in images {
        let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read", path, e))?;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plot");
        let _ = writeln!(
            html,
            "<img alt=\"{}\" src=\"data:image/png;base64,{data}\">",
            escape(name)
        );
    }
    html.push_str("<h2>Configuration</h2>\n<h3>Shared run settings</h3>\n<pre>");
    html.push_str(&escape(&config.base.to_toml()?));
    html.push_str("</pre>\n<h3>Method settings</h3>\n<pre>");
    for (name, spec) in &config.methods {
        let text = toml::to_string_pretty(spec)
            .map_err(|e| Error::Data(format!("failed to encode method {name}: {e}")))?;
        let _ = writeln!(html, "[methods.{}]\n{}", escape(name), escape(&text));
    }
    html.push_str("</pre>\n</body>\n</html>\n");
    Ok(html)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
