//! The colour theme: the system's setting (the default), or light or dark chosen with the
//! header's button. The choice lives in a cookie, which the server reads when it renders a page so
//! the page arrives in the right colours (no inline script, no flash).

/// The cookie holding the choice: `light` or `dark`; absent follows the system.
pub const COOKIE: &str = "duet_theme";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    /// From the `data-theme` attribute or the cookie's value; anything else follows the system.
    pub fn parse(value: Option<&str>) -> Theme {
        match value.map(str::trim) {
            Some("light") => Theme::Light,
            Some("dark") => Theme::Dark,
            _ => Theme::System,
        }
    }

    /// The choice in a `Cookie:` request header.
    pub fn from_cookie_header(header: &str) -> Theme {
        let value = header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == COOKIE);
        Theme::parse(value.map(|(_, v)| v))
    }

    /// The `data-theme` attribute's value; none for the system's setting.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            Theme::System => None,
            Theme::Light => Some("light"),
            Theme::Dark => Some("dark"),
        }
    }

    /// What a click on the button moves to: system, light, dark, and round again.
    pub fn next(self) -> Theme {
        match self {
            Theme::System => Theme::Light,
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::System,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Theme::System => "System",
            Theme::Light => "Light",
            Theme::Dark => "Dark",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_odd_values_follow_the_system() {
        assert_eq!(Theme::from_cookie_header("id=abc; duet_theme=dark; x=1"), Theme::Dark);
        assert_eq!(Theme::from_cookie_header("duet_theme=light"), Theme::Light);
        assert_eq!(Theme::from_cookie_header("duet_theme=\"><script>"), Theme::System);
        assert_eq!(Theme::from_cookie_header("not_duet_theme=dark"), Theme::System);
        assert_eq!(Theme::from_cookie_header(""), Theme::System);
    }

    #[test]
    fn the_button_goes_round_all_three() {
        let mut t = Theme::System;
        let seen: Vec<_> = (0..3)
            .map(|_| {
                t = t.next();
                t.attribute()
            })
            .collect();
        assert_eq!(seen, [Some("light"), Some("dark"), None]);
    }
}
