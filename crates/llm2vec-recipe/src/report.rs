//! The results page: the scores table (a row per stage, a column per task, STS and overall averages),
//! the training costs, the paper's comparisons and the targets, a bar chart of the scores and each
//! training's loss curve, and the commands behind every number.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use llm2vec_train::plot::escape;

use crate::error::{RecipeError, Result};
use crate::{RecipeOptions, StageRecord};

/// STS-B test Spearman (x100) to aim at: unsupervised SimCSE on BERT-base, and all-MiniLM-L6-v2.
const UNSUPERVISED_TARGET: f64 = 76.5;
const SUPERVISED_TARGET: f64 = 82.0;

/// Writes the results page and its pictures (in a folder named after the page, next to it); `pending`
/// names the rows still to run.
pub fn write(opts: &RecipeOptions, records: &[StageRecord], pending: &[&str], seconds: f64) -> Result<()> {
    let pictures = pictures_dir(&opts.results);
    std::fs::create_dir_all(&pictures).map_err(|e| RecipeError::io(&pictures, e))?;
    let folder = pictures.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tasks = task_names(records);
    llm2vec::fs::write_atomic(&pictures.join("scores.svg"), bar_chart(records, &tasks).as_bytes())?;
    let mut links = vec![format!("![Scores by stage]({folder}/scores.svg)")];
    for record in records {
        if let Some(t) = &record.training {
            let name = format!("{}-loss.svg", record.slug);
            let svg = std::fs::read(&t.loss_svg).map_err(|e| RecipeError::io(&t.loss_svg, e))?;
            llm2vec::fs::write_atomic(&pictures.join(&name), &svg)?;
            links.push(format!("![{} loss]({folder}/{name})", record.title));
        }
    }
    let page = markdown(opts, records, pending, &tasks, seconds, &links);
    llm2vec::fs::write_atomic(&opts.results, page.as_bytes())?;
    Ok(())
}

fn task_names(records: &[StageRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in records.iter().flat_map(|r| &r.scores) {
        if !names.contains(&s.task) {
            names.push(s.task.clone());
        }
    }
    names
}

/// The STS average and the overall average (mean over data sets, as MTEB), x100.
fn averages(record: &StageRecord) -> (Option<f64>, f64) {
    let mean = |v: Vec<f64>| if v.is_empty() { None } else { Some(100.0 * v.iter().sum::<f64>() / v.len() as f64) };
    let sts = mean(record.scores.iter().filter(|s| s.kind == "STS").map(|s| s.score).collect());
    (sts, mean(record.scores.iter().map(|s| s.score).collect()).unwrap_or(f64::NAN))
}

fn score(record: &StageRecord, task: &str) -> Option<f64> {
    record.scores.iter().find(|s| s.task == task).map(|s| 100.0 * s.score)
}

fn markdown(
    opts: &RecipeOptions,
    records: &[StageRecord],
    pending: &[&str],
    tasks: &[String],
    seconds: f64,
    links: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Results: the LLM2Vec recipe, profile `{}`\n", opts.profile.name());
    let _ = writeln!(
        md,
        "Written by `{}` on {}; this run took {} (stages finished by earlier runs were not redone; each keeps \
         its own times below). Scores are main scores x 100: Spearman of cosine similarity (STS), nDCG@10 \
         (retrieval), accuracy (classification), V-measure (clustering), average precision (pair classification). \
         The STS average is over the STS tasks, the overall average over all data sets (as MTEB).\n",
        opts.command,
        machine(),
        duration(seconds)
    );
    if !pending.is_empty() {
        let _ = writeln!(
            md,
            "**In progress:** these are the stages finished so far; still to run: {}. Running the same command \
             again continues where this run stopped.\n",
            pending.join("; ")
        );
    }
    let _ = writeln!(md, "| Stage | {} | STS avg | Overall |", tasks.join(" | "));
    let _ = writeln!(md, "|---|{}---|---|", "---|".repeat(tasks.len()));
    for r in records {
        let cells: Vec<String> = tasks.iter().map(|t| fmt(score(r, t))).collect();
        let (sts, overall) = averages(r);
        let _ = writeln!(md, "| {} | {} | {} | {} |", r.title, cells.join(" | "), fmt(sts), fmt(Some(overall)));
    }
    md += "\n## Training\n\n";
    if records.iter().all(|r| r.training.is_none()) {
        md += "No training stage has finished yet.\n";
    } else {
        md += "| Stage | Steps | Batch x max tokens | Learning rate | Tokens | Wall time | Loss, first -> last third | During training |\n|---|---|---|---|---|---|---|---|\n";
    }
    for r in records {
        if let Some(t) = &r.training {
            let (first, last) = thirds(&t.losses);
            let evals: Vec<String> =
                t.evals.iter().map(|(step, metric, v)| format!("{metric} {v:.4} @{step}")).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} x {} | {:e} | {} | {} | {first:.4} -> {last:.4} | {} |",
                r.title,
                t.steps,
                t.batch_size,
                t.max_seq_length,
                t.learning_rate,
                t.tokens,
                duration(t.seconds),
                evals.join(", ")
            );
        }
    }
    md += &shape(records);
    md += "\n## Commands\n\nEach row, reproduced stage by stage (the recipe wrote each training config it used). The time \
           after an evaluation is that of the run that finished it: texts already in the embedding cache (from an \
           earlier run, or a stopped one, with the same model and settings) were not encoded again.\n\n";
    for r in records {
        let _ = writeln!(md, "- {}:", r.title);
        if let Some(t) = &r.training {
            let _ = writeln!(md, "  `{}`, then", t.command);
        }
        let _ = writeln!(md, "  `{}` ({})", r.eval_command, duration(r.eval_seconds));
    }
    md += "\n## Pictures\n\n";
    for link in links {
        let _ = writeln!(md, "{link}\n");
    }
    md
}

/// The paper's three comparisons and the two targets, with what this run found.
fn shape(records: &[StageRecord]) -> String {
    let find = |slug: &str| records.iter().find(|r| r.slug == slug);
    let overall = |slug: &str| find(slug).map(|r| averages(r).1);
    let mut md = String::from("\n## The paper's shape\n\n");
    let compare = |md: &mut String, what: &str, a: &str, b: &str, paper: &str| {
        if let (Some(x), Some(y)) = (overall(a), overall(b)) {
            let verdict = if x > y { "higher" } else { "lower" };
            let _ = writeln!(
                md,
                "- {what}: {x:.2} vs {y:.2} overall, {verdict} ({:+.2}); the paper found it {paper}.",
                x - y
            );
        }
    };
    compare(
        &mut md,
        "Bidirectional attention, untrained, vs causal (mean pooling)",
        "bidirectional-mean",
        "causal-mean",
        "lower (naive bidirectional attention hurts)",
    );
    compare(&mut md, "MNTP vs untrained bidirectional", "mntp", "bidirectional-mean", "higher (MNTP recovers)");
    compare(&mut md, "MNTP + SimCSE vs MNTP", "mntp-simcse", "mntp", "higher");
    md += "\n## Targets (STSBenchmark test, Spearman x 100)\n\n";
    for (slug, target, whom) in [
        ("mntp-simcse", UNSUPERVISED_TARGET, "unsupervised SimCSE on BERT-base, a 110M encoder"),
        ("mntp-supervised", SUPERVISED_TARGET, "all-MiniLM-L6-v2"),
    ] {
        let title = crate::ROWS.iter().find(|r| r.slug == slug).map_or(slug, |r| r.title);
        let got = find(slug).map_or_else(|| "not run yet".into(), |r| fmt(score(r, "STSBenchmark")));
        let _ = writeln!(md, "- {title}: {got} (target {target:.1}, {whom})");
    }
    md
}

/// Fails unless every training stage ends with a lower mean loss (last third of its steps) than it began.
pub fn check_losses_fall(records: &[StageRecord]) -> Result<()> {
    let stuck: Vec<String> = records
        .iter()
        .filter_map(|r| r.training.as_ref().map(|t| (r, thirds(&t.losses))))
        .filter(|(_, (first, last))| last.partial_cmp(first) != Some(std::cmp::Ordering::Less))
        .map(|(r, (first, last))| format!("{} ({first:.4} -> {last:.4})", r.slug))
        .collect();
    if stuck.is_empty() {
        Ok(())
    } else {
        Err(RecipeError::LossDidNotFall(stuck.join(", ")))
    }
}

/// Mean loss of the first and of the last third of the steps.
fn thirds(losses: &[f64]) -> (f64, f64) {
    let n = (losses.len() / 3).max(1).min(losses.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

fn fmt(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "-".into(), |x| format!("{x:.2}"))
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// The CPU model, cores and memory of this machine (Linux), else what is known.
fn machine() -> String {
    let cpu = read_field(Path::new("/proc/cpuinfo"), "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memory = read_field(Path::new("/proc/meminfo"), "MemTotal")
        .and_then(|v| v.split_whitespace().next().and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| format!(", {:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpu} ({cores} cores{memory})")
}

fn read_field(path: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

const COLORS: [&str; 7] = ["#bdbdbd", "#969696", "#636363", "#fdae6b", "#6baed6", "#3182bd", "#31a354"];

/// Grouped bars: one group per task (and the two averages), one bar per stage.
fn bar_chart(records: &[StageRecord], tasks: &[String]) -> String {
    let mut groups: Vec<(String, Vec<Option<f64>>)> =
        tasks.iter().map(|t| (t.clone(), records.iter().map(|r| score(r, t)).collect())).collect();
    groups.push(("STS avg".into(), records.iter().map(|r| averages(r).0).collect()));
    groups.push(("Overall".into(), records.iter().map(|r| Some(averages(r).1)).collect()));
    let (bar, gap, left, top, height) = (9.0, 14.0, 40.0, 30.0, 260.0);
    let group_width = bar * records.len() as f64 + gap;
    let width = left + group_width * groups.len() as f64 + 20.0;
    let legend_top = top + height + 110.0;
    let total_height = legend_top + 16.0 * records.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{total_height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"14\">Main score x 100 by stage</text>\n"
    );
    for tick in [0, 25, 50, 75, 100] {
        let y = top + height * (1.0 - tick as f64 / 100.0);
        let _ = writeln!(svg, "<line x1=\"{left}\" y1=\"{y}\" x2=\"{width:.0}\" y2=\"{y}\" stroke=\"#eeeeee\"/><text x=\"4\" y=\"{y}\">{tick}</text>");
    }
    for (g, (name, values)) in groups.iter().enumerate() {
        let x0 = left + g as f64 * group_width;
        for (k, v) in values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else { continue };
            let h = height * v.clamp(0.0, 100.0) / 100.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {v:.2}</title></rect>",
                x0 + k as f64 * bar,
                top + height - h,
                COLORS[k % COLORS.len()],
                escape(&records[k].title)
            );
        }
        let (lx, ly) = (x0 + group_width / 2.0, top + height + 8.0);
        let _ = writeln!(
            svg,
            "<text x=\"{lx:.1}\" y=\"{ly}\" transform=\"rotate(45 {lx:.1} {ly})\">{}</text>",
            escape(name)
        );
    }
    for (k, r) in records.iter().enumerate() {
        let y = legend_top + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{left}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{y:.0}\">{}</text>",
            y - 9.0,
            COLORS[k % COLORS.len()],
            left + 16.0,
            escape(&r.title)
        );
    }
    svg + "</svg>\n"
}

/// The folder the pictures of `results` go to (`docs/results.md` -> `docs/results/`).
fn pictures_dir(results: &Path) -> PathBuf {
    results.with_extension("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskScore, TrainingRecord};

    fn record(slug: &str, scores: &[(&str, &str, f64)], losses: Option<Vec<f64>>) -> StageRecord {
        StageRecord {
            slug: slug.into(),
            title: slug.into(),
            profile: "quick".into(),
            scores: scores
                .iter()
                .map(|&(task, kind, score)| TaskScore {
                    task: task.into(),
                    kind: kind.into(),
                    metric: "m".into(),
                    score,
                })
                .collect(),
            eval_seconds: 1.0,
            eval_command: "llm2vec eval".into(),
            training: losses.map(|losses| TrainingRecord {
                steps: losses.len(),
                batch_size: 2,
                max_seq_length: 8,
                learning_rate: 1e-4,
                tokens: 10,
                seconds: 1.0,
                losses,
                evals: Vec::new(),
                command: "llm2vec train".into(),
                adapter: PathBuf::from("a"),
                loss_svg: PathBuf::from("a/loss.svg"),
            }),
        }
    }

    #[test]
    fn sts_average_covers_sts_tasks_and_overall_every_task() {
        let r = record("x", &[("A", "STS", 0.5), ("B", "STS", 0.7), ("C", "Classification", 0.9)], None);
        let (sts, overall) = averages(&r);
        assert!((sts.unwrap() - 60.0).abs() < 1e-9 && (overall - 70.0).abs() < 1e-9);
        assert_eq!(averages(&record("y", &[("C", "Classification", 0.9)], None)).0, None);
    }

    #[test]
    fn losses_must_fall_from_the_first_third_to_the_last() {
        let falling = record("down", &[], Some(vec![3.0, 2.9, 2.5, 2.4, 2.0, 1.9]));
        assert!(check_losses_fall(&[falling.clone(), record("eval-only", &[], None)]).is_ok());
        let flat = record("flat", &[], Some(vec![2.0, 2.5, 1.0, 3.0, 2.5, 2.0]));
        let err = check_losses_fall(&[falling, flat]).unwrap_err().to_string();
        assert!(err.contains("flat (2.2500 -> 2.2500)") && !err.contains("down"), "{err}");
    }

    #[test]
    fn the_page_has_a_row_per_stage_and_the_comparisons() {
        let records = [
            record("causal-mean", &[("STSBenchmark", "STS", 0.5)], None),
            record("bidirectional-mean", &[("STSBenchmark", "STS", 0.3)], None),
        ];
        let page = markdown(&opts(), &records, &[], &task_names(&records), 5.0, &[]);
        assert!(page.contains("| causal-mean | 50.00 | 50.00 | 50.00 |"), "{page}");
        assert!(!page.contains("In progress"), "{page}");
        assert!(page.contains("30.00 vs 50.00 overall, lower (-20.00)"), "{page}");
        assert!(bar_chart(&records, &task_names(&records)).matches("<rect x=").count() >= 6);
        let partial = markdown(&opts(), &records[..1], &["bidirectional-mean"], &task_names(&records), 5.0, &[]);
        assert!(partial.contains("still to run: bidirectional-mean."), "{partial}");
        assert!(
            partial.contains("No training stage has finished yet.")
                && partial.contains("MNTP + supervised: not run yet"),
            "{partial}"
        );
    }

    fn opts() -> RecipeOptions {
        RecipeOptions {
            profile: crate::Profile::Quick,
            data_dir: "d".into(),
            configs: "c".into(),
            config_name: "x.json".into(),
            output_dir: "o".into(),
            results: "o/results.md".into(),
            restart: false,
            device: llm2vec::Device::Cpu,
            dtype: llm2vec::DType::F32,
            cache: llm2vec_eval::CacheDir::Off,
            stop: Default::default(),
            progress: false,
            command: "llm2vec recipe --quick".into(),
        }
    }
}
