//! Numbers written in words (`zero`, `negative four`, `twenty-one`, `one hundred and twenty`)
//! and with scale words (`2.5 million`, `three thousand`), read as digit strings so that the
//! rest of the `math` verifier compares them like any number.

/// The value of a small number word.
fn small(word: &str) -> Option<u64> {
    Some(match word {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

/// The multiplier of a scale word.
fn scale(word: &str) -> Option<u64> {
    Some(match word {
        "thousand" => 1_000,
        "million" => 1_000_000,
        "billion" => 1_000_000_000,
        "trillion" => 1_000_000_000_000,
        _ => return None,
    })
}

/// `s` as a number when the whole of it is a number in words or a decimal with a scale word;
/// `None` otherwise (mixed text, a bare word like `one` inside a sentence is not handled here).
pub(crate) fn words_to_number(s: &str) -> Option<String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 120 {
        return None;
    }
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .collect();
    let (negative, words) = match words.first() {
        Some(&"negative") | Some(&"minus") => (true, &words[1..]),
        _ => (false, &words[..]),
    };
    if words.is_empty() {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    // `2.5 million`, `3 thousand`
    if let [num, sc] = words {
        if let (Ok(x), Some(m)) = (num.replace(',', "").parse::<f64>(), scale(sc)) {
            if x.is_finite() {
                return Some(format!("{sign}({num}*{m})", num = num.replace(',', "")));
            }
        }
    }
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut any = false;
    for (i, w) in words.iter().enumerate() {
        if *w == "and" && i > 0 && i + 1 < words.len() {
            continue;
        }
        if let Some(v) = small(w) {
            // `twenty one` adds; `one two` is not a number
            if !current.is_multiple_of(10)
                || (current != 0 && v >= 10 && !current.is_multiple_of(100))
            {
                return None;
            }
            current += v;
        } else if *w == "hundred" {
            if current == 0 || current >= 100 {
                return None;
            }
            current *= 100;
        } else if let Some(m) = scale(w) {
            if current == 0 {
                return None;
            }
            total = total.checked_add(current.checked_mul(m)?)?;
            current = 0;
        } else {
            return None;
        }
        any = true;
    }
    if !any {
        return None;
    }
    Some(format!("{sign}{}", total.checked_add(current)?))
}

#[cfg(test)]
mod tests {
    use super::words_to_number as w;

    #[test]
    fn words() {
        for (s, want) in [
            ("zero", "0"),
            ("Twelve", "12"),
            ("negative four", "-4"),
            ("minus four", "-4"),
            ("twenty-one", "21"),
            ("twenty one", "21"),
            ("one hundred twenty", "120"),
            ("one hundred and twenty", "120"),
            ("three thousand", "3000"),
            ("one million", "1000000"),
            ("two thousand and five", "2005"),
            ("2.5 million", "(2.5*1000000)"),
            ("negative 3 thousand", "-(3*1000)"),
        ] {
            assert_eq!(w(s).as_deref(), Some(want), "{s}");
        }
        for s in [
            "",
            "one two",
            "twenty twenty",
            "hundred",
            "and",
            "the answer",
            "five apples",
            "negative",
        ] {
            assert_eq!(w(s), None, "{s}");
        }
    }
}
