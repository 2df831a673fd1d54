//! The SVG bar charts of a report: grouped bars, one colour per contender, one panel per
//! figure, drawn by hand so that the rig needs no plotting library. Every text is escaped.

use std::fmt::Write as _;

/// A grouped bar chart: `values[group][series]`.
pub struct Chart {
    pub title: String,
    pub groups: Vec<String>,
    pub series: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
}

const COLOURS: [&str; 6] = [
    "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Short labels for bar values: `57.5k`, `1.62`.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Charts stacked one under another, with one legend.
pub fn render_svg(title: &str, charts: &[Chart]) -> String {
    let width = 760.0;
    let (left, right) = (60.0, 20.0);
    let panel_h = 240.0;
    let plot_h = 160.0;
    let top = 60.0;
    let height = top + panel_h * charts.len() as f64 + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    // The legend, from the first chart's series.
    if let Some(first) = charts.first() {
        for (i, name) in first.series.iter().enumerate() {
            let x = left + i as f64 * 120.0;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"42\">{}</text>",
                COLOURS[i % COLOURS.len()],
                x + 16.0,
                escape(name)
            );
        }
    }
    for (c, chart) in charts.iter().enumerate() {
        let y0 = top + c as f64 * panel_h;
        let base = y0 + 20.0 + plot_h;
        let max = chart
            .values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let max = if max > 0.0 { max * 1.1 } else { 1.0 };
        let _ = writeln!(
            s,
            "<text x=\"{left}\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">{}</text>\n\
             <line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#333\"/>",
            y0 + 12.0,
            escape(&chart.title),
            width - right
        );
        let groups = chart.groups.len().max(1) as f64;
        let group_w = (width - left - right) / groups;
        let bars = chart.series.len().max(1) as f64;
        let bar_w = (group_w * 0.8 / bars).min(60.0);
        for (g, name) in chart.groups.iter().enumerate() {
            let gx = left + g as f64 * group_w;
            let start = gx + (group_w - bar_w * bars) / 2.0;
            for (i, v) in chart.values.get(g).into_iter().flatten().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else {
                    continue;
                };
                let h = (v / max * plot_h).max(0.0);
                let x = start + i as f64 * bar_w;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                     <title>{}: {v}</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                    base - h,
                    bar_w - 2.0,
                    COLOURS[i % COLOURS.len()],
                    escape(chart.series.get(i).map_or("", String::as_str)),
                    x + bar_w / 2.0 - 1.0,
                    base - h - 3.0,
                    short(v)
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                gx + group_w / 2.0,
                base + 14.0,
                escape(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
