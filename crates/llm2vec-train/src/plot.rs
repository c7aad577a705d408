//! The loss curve of a run as an SVG picture (raw per-step loss and its moving average).

use crate::checkpoint::StepRecord;

const W: f64 = 640.0;
const H: f64 = 360.0;
const PAD: f64 = 48.0;

/// An SVG line chart of loss against step.
pub fn loss_curve_svg(title: &str, steps: &[StepRecord]) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{PAD}\" y=\"20\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    let finite: Vec<&StepRecord> = steps.iter().filter(|r| r.loss.is_finite()).collect();
    if finite.len() >= 2 {
        let (lo, hi) =
            finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(r.loss), hi.max(r.loss)));
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let (first, last) = (finite[0].step as f64, finite[finite.len() - 1].step as f64);
        let span = (last - first).max(1.0);
        let x = |s: usize| PAD + (s as f64 - first) / span * (W - 2.0 * PAD);
        let y = |l: f64| H - PAD - (l - lo) / (hi - lo) * (H - 2.0 * PAD);
        let line = |points: Vec<(usize, f64)>, color: &str| {
            let pts: Vec<String> = points.iter().map(|&(s, l)| format!("{:.1},{:.1}", x(s), y(l))).collect();
            format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n", pts.join(" "))
        };
        svg += &line(finite.iter().map(|r| (r.step, r.loss)).collect(), "#9ecae1");
        let window = (finite.len() / 20).max(1);
        let smooth = (0..finite.len())
            .map(|i| {
                let from = i.saturating_sub(window - 1);
                let mean = finite[from..=i].iter().map(|r| r.loss).sum::<f64>() / (i + 1 - from) as f64;
                (finite[i].step, mean)
            })
            .collect();
        svg += &line(smooth, "#08519c");
        svg += &format!(
            "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <text x=\"4\" y=\"{yt}\">{hi:.3}</text>\n<text x=\"4\" y=\"{b}\">{lo:.3}</text>\n\
             <text x=\"{PAD}\" y=\"{xl}\">step {first}</text>\n<text x=\"{r}\" y=\"{xl}\" text-anchor=\"end\">step {last}</text>\n\
             <text x=\"{mid}\" y=\"{xl}\" text-anchor=\"middle\">loss (light: per step; dark: moving mean of {window})</text>\n",
            b = H - PAD,
            r = W - PAD,
            yt = PAD + 4.0,
            xl = H - PAD + 20.0,
            mid = W / 2.0,
        );
    } else {
        svg += &format!("<text x=\"{PAD}\" y=\"{}\">fewer than two steps</text>\n", H / 2.0);
    }
    svg + "</svg>\n"
}

/// `s` with the characters XML reserves escaped, for SVG text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
