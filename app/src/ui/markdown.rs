//! Model answers as Markdown, made safe: raw HTML is shown as text, links keep only web and mail
//! schemes, and images become their alt text (a reply must not make the browser fetch anything,
//! nor run anything). Pure, so server rendering and the browser produce the same HTML.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        // A colon after a slash, '?' or '#' is not a scheme: relative links stay.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// HTML for a Markdown text (GitHub flavour: tables, strikethrough, task lists).
pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut in_image = 0usize;
    let events = Parser::new_ext(markdown, options).filter_map(move |event| match event {
        Event::Start(Tag::Image { .. }) => {
            in_image += 1;
            None
        }
        Event::End(TagEnd::Image) => {
            in_image = in_image.saturating_sub(1);
            None
        }
        // Inside an image only its alt text is kept, as text.
        Event::Text(text) | Event::Code(text) if in_image > 0 => Some(Event::Text(text)),
        _ if in_image > 0 => None,
        Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) if !safe_url(&dest_url) => {
            Some(Event::Start(Tag::Link { link_type, dest_url: CowStr::Borrowed("#"), title, id }))
        }
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn code_blocks_keep_their_language_and_escape_their_text() {
        let html = to_html("Try:\n\n```rust\nfn main() { println!(\"<hi>\"); }\n```\n");
        assert!(html.contains("<pre><code class=\"language-rust\">"), "{html}");
        assert!(html.contains("&lt;hi&gt;"), "{html}");
    }

    #[test]
    fn raw_html_is_shown_not_run() {
        let html = to_html("hello <script>alert(1)</script> <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn links_keep_only_safe_schemes_and_images_fetch_nothing() {
        let html = to_html("[a](javascript:alert(1)) [b](https://example.com) [c](/gallery) [d]( JavaScript:x)");
        assert!(!html.to_lowercase().contains("javascript"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("href=\"/gallery\""), "{html}");
        let html = to_html("look ![a red *fox*](http://tracker.example/p.png) here");
        assert!(!html.contains("<img") && !html.contains("tracker"), "{html}");
        assert!(html.contains("a red") && html.contains("fox"), "{html}");
    }

    #[test]
    fn tables_and_lists_render() {
        let html = to_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- ~~gone~~");
        assert!(html.contains("<table>") && html.contains("<td>2</td>"), "{html}");
        assert!(html.contains("checkbox") && html.contains("<del>gone</del>"), "{html}");
    }
}
