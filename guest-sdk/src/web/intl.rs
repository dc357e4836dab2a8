//! The native half of `Intl`: ICU4X with its compiled data (CLDR) for
//! numbers, plural rules, collation and dates.
//!
//! Formatters are built on first use in a call and kept by their options
//! for the rest of the call, so sorting with a collator or formatting in a
//! loop builds each one once.

use fixed_decimal::{
    Decimal, FloatPrecision, SignDisplay, SignedRoundingMode, UnsignedRoundingMode,
};
use icu_calendar::{Date, Iso};
use icu_collator::options::{CaseLevel, CollatorOptions, Strength};
use icu_collator::preferences::{CollationCaseFirst, CollationNumericOrdering};
use icu_collator::{Collator, CollatorBorrowed, CollatorPreferences};
use icu_datetime::fieldsets::builder::{DateFields, FieldSetBuilder};
use icu_datetime::fieldsets::enums::CompositeDateTimeFieldSet;
use icu_datetime::options::{Length, SubsecondDigits, TimePrecision, YearStyle};
use icu_datetime::preferences::HourCycle;
use icu_datetime::{DateTimeFormatter, DateTimeFormatterPreferences};
use icu_decimal::options::{DecimalFormatterOptions, GroupingStrategy};
use icu_decimal::{DecimalFormatter, DecimalFormatterPreferences};
use icu_locale_core::Locale;
use icu_plurals::{PluralCategory, PluralRuleType, PluralRules, PluralRulesOptions};
use icu_time::{DateTime, Time};
use javy_plugin_api::javy::quickjs::{Ctx, Exception, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static DECIMALS: RefCell<HashMap<String, Rc<DecimalFormatter>>> = RefCell::new(HashMap::new());
    static PLURALS: RefCell<HashMap<String, Rc<PluralRules>>> = RefCell::new(HashMap::new());
    static COLLATORS: RefCell<HashMap<String, Rc<CollatorBorrowed<'static>>>> = RefCell::new(HashMap::new());
    static DATES: RefCell<HashMap<String, Rc<DateTimeFormatter<CompositeDateTimeFieldSet>>>> = RefCell::new(HashMap::new());
}

/// The value kept in `cache` under `key`, built by `make` the first time.
fn cached<T>(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<String, Rc<T>>>>,
    key: String,
    make: impl FnOnce() -> Option<T>,
) -> Option<Rc<T>> {
    if let Some(found) = cache.with(|c| c.borrow().get(&key).cloned()) {
        return Some(found);
    }
    let made = Rc::new(make()?);
    cache.with(|c| c.borrow_mut().insert(key, made.clone()));
    Some(made)
}

fn locale(tag: &str) -> Locale {
    Locale::try_from_str(tag).unwrap_or(Locale::UNKNOWN)
}

/// The canonical form of a BCP 47 language tag, or `None` when it is not
/// one (the caller throws `RangeError`).
pub fn canonical_locale(tag: String) -> Option<String> {
    Locale::try_from_str(&tag).ok().map(|l| l.to_string())
}

/// How a number is rounded and padded: ECMA-402's digit options.
pub struct Digits {
    pub min_integer: i16,
    pub min_fraction: i16,
    pub max_fraction: i16,
    /// Significant digits (min, max), when they rule instead of fraction
    /// digits.
    pub significant: Option<(i16, i16)>,
}

impl Digits {
    fn from_js(digits: Vec<f64>) -> Digits {
        let at = |i: usize| digits.get(i).copied().unwrap_or(0.0).clamp(0.0, 100.0) as i16;
        Digits {
            min_integer: at(0).max(1),
            min_fraction: at(1),
            max_fraction: at(2),
            significant: (at(3) > 0).then(|| (at(3), at(4).max(at(3)))),
        }
    }

    /// Rounds half away from zero and pads `value` as ECMA-402 asks.
    fn apply(&self, value: &mut Decimal) {
        let half_expand = SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand);
        match self.significant {
            Some((min, max)) => {
                let top = value.absolute.nonzero_magnitude_start();
                value.round_with_mode(top - max + 1, half_expand);
                value.absolute.trim_end();
                let top = value.absolute.nonzero_magnitude_start();
                value.absolute.pad_end((top - min + 1).min(0));
            }
            None => {
                value.round_with_mode(-self.max_fraction, half_expand);
                value.absolute.trim_end();
                value.absolute.pad_end(-self.min_fraction);
            }
        }
        value.absolute.pad_start(self.min_integer);
    }
}

/// A number as a decimal: a finite `f64` by its shortest round-trip digits
/// (as `Number#toString` shows it), or the digits of a BigInt.
fn decimal(number: Option<f64>, digits: Option<String>) -> Option<Decimal> {
    match (number, digits) {
        (Some(n), _) => Decimal::try_from_f64(n, FloatPrecision::RoundTrip).ok(),
        (None, Some(s)) => Decimal::try_from_str(&s).ok(),
        (None, None) => None,
    }
}

/// Formats a finite number (or BigInt digits) under `style`: `[style,
/// grouping, sign]`, where `percent` scales by 100 (the caller adds the
/// sign), grouping is one of `auto`, `always`, `min2`, `never`, and sign
/// one of ECMA-402's `signDisplay` values.
pub fn format_number<'js>(
    ctx: Ctx<'js>,
    tag: String,
    number: Option<f64>,
    bigint: Option<String>,
    digits: Vec<f64>,
    style: Vec<String>,
) -> Result<String> {
    let option = |i: usize| style.get(i).map(String::as_str).unwrap_or("");
    let (percent, grouping, sign) = (option(0) == "percent", option(1), option(2));
    let Some(mut value) = decimal(number, bigint) else {
        return Err(Exception::throw_range(
            &ctx,
            "the number cannot be formatted",
        ));
    };
    if percent {
        value.absolute.multiply_pow10(2);
    }
    Digits::from_js(digits).apply(&mut value);
    value.apply_sign_display(match sign {
        "never" => SignDisplay::Never,
        "always" => SignDisplay::Always,
        "exceptZero" => SignDisplay::ExceptZero,
        "negative" => SignDisplay::Negative,
        _ => SignDisplay::Auto,
    });
    let strategy = match grouping {
        "always" => GroupingStrategy::Always,
        "min2" => GroupingStrategy::Min2,
        "never" => GroupingStrategy::Never,
        _ => GroupingStrategy::Auto,
    };
    let formatter = cached(&DECIMALS, format!("{tag}/{grouping}"), || {
        let prefs = DecimalFormatterPreferences::from(&locale(&tag));
        let mut options = DecimalFormatterOptions::default();
        options.grouping_strategy = Some(strategy);
        DecimalFormatter::try_new(prefs, options).ok()
    });
    match formatter {
        Some(formatter) => Ok(formatter.format(&value).to_string()),
        None => Err(Exception::throw_range(
            &ctx,
            "no number format for this locale",
        )),
    }
}

fn plural_rules(tag: &str, ordinal: bool) -> Option<Rc<PluralRules>> {
    cached(&PLURALS, format!("{tag}/{ordinal}"), || {
        let mut options = PluralRulesOptions::default();
        options.rule_type = Some(if ordinal {
            PluralRuleType::Ordinal
        } else {
            PluralRuleType::Cardinal
        });
        PluralRules::try_new((&locale(tag)).into(), options).ok()
    })
}

fn category_name(category: PluralCategory) -> &'static str {
    match category {
        PluralCategory::Zero => "zero",
        PluralCategory::One => "one",
        PluralCategory::Two => "two",
        PluralCategory::Few => "few",
        PluralCategory::Many => "many",
        PluralCategory::Other => "other",
    }
}

/// The plural category of a finite number, after rounding it as it would
/// be formatted.
pub fn plural_select(tag: String, ordinal: bool, number: f64, digits: Vec<f64>) -> String {
    let Some(mut value) = decimal(Some(number.abs()), None) else {
        return "other".to_owned();
    };
    Digits::from_js(digits).apply(&mut value);
    plural_rules(&tag, ordinal)
        .map(|rules| category_name(rules.category_for(&value)))
        .unwrap_or("other")
        .to_owned()
}

/// The plural categories the locale uses, in CLDR order.
pub fn plural_categories(tag: String, ordinal: bool) -> Vec<String> {
    plural_rules(&tag, ordinal)
        .map(|rules| {
            rules
                .categories()
                .map(|c| category_name(c).to_owned())
                .collect()
        })
        .unwrap_or_else(|| vec!["other".to_owned()])
}

/// Compares two strings under the locale's collation: `sensitivity` is
/// ECMA-402's (`base`, `accent`, `case`, `variant`), `case_first` one of
/// `upper`, `lower`, `false`.
pub fn compare(
    tag: String,
    sensitivity: String,
    numeric: bool,
    case_first: String,
    left: String,
    right: String,
) -> i32 {
    let key = format!("{tag}/{sensitivity}/{numeric}/{case_first}");
    let collator = cached(&COLLATORS, key, || {
        let mut prefs = CollatorPreferences::from(&locale(&tag));
        if numeric {
            prefs.numeric_ordering = Some(CollationNumericOrdering::True);
        }
        prefs.case_first = match case_first.as_str() {
            "upper" => Some(CollationCaseFirst::Upper),
            "lower" => Some(CollationCaseFirst::Lower),
            _ => prefs.case_first,
        };
        let mut options = CollatorOptions::default();
        let (strength, case_level) = match sensitivity.as_str() {
            "base" => (Strength::Primary, CaseLevel::Off),
            "accent" => (Strength::Secondary, CaseLevel::Off),
            "case" => (Strength::Primary, CaseLevel::On),
            _ => (Strength::Tertiary, CaseLevel::Off),
        };
        options.strength = Some(strength);
        options.case_level = Some(case_level);
        Collator::try_new(prefs, options).ok()
    });
    match collator {
        Some(collator) => collator.compare(&left, &right) as i32,
        None => left.cmp(&right) as i32,
    }
}

/// Civil date and time in UTC of a time value (milliseconds since the
/// epoch): year, month, day, hour, minute, second, millisecond.
fn civil(ms: f64) -> (i32, u8, u8, u8, u8, u8, u32) {
    let ms = ms as i64;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (
        year,
        month,
        day,
        (in_day / 3_600_000) as u8,
        (in_day / 60_000 % 60) as u8,
        (in_day / 1000 % 60) as u8,
        (in_day % 1000) as u32,
    )
}

/// Formats a time value in UTC. `options` holds `[fields, length, year,
/// time, hour_cycle]`: `fields` names the date fields (`YMDE`,
/// `YMD`, `MD`, ..., or empty for none), `length` is `long`, `medium` or
/// `short`, `year` is `full` or `auto` (two digits where the locale's short
/// form has them), `time` is the precision (`hour`, `minute`, `second`,
/// `1`..`3` fractional digits, or empty for none), `hour_cycle` is `h12`,
/// `h23` or empty for the locale's.
pub fn format_date<'js>(
    ctx: Ctx<'js>,
    tag: String,
    ms: f64,
    options: Vec<String>,
) -> Result<String> {
    let option = |i: usize| options.get(i).map(String::as_str).unwrap_or("");
    let (fields, length, year, time, hour_cycle) =
        (option(0), option(1), option(2), option(3), option(4));
    let key = format!("{tag}/{fields}/{length}/{year}/{time}/{hour_cycle}");
    let formatter = cached(&DATES, key, || {
        let mut builder = FieldSetBuilder::new();
        builder.length = Some(match length {
            "long" => Length::Long,
            "medium" => Length::Medium,
            _ => Length::Short,
        });
        builder.date_fields = match fields {
            "YMDE" => Some(DateFields::YMDE),
            "YMD" => Some(DateFields::YMD),
            "MDE" => Some(DateFields::MDE),
            "MD" => Some(DateFields::MD),
            "DE" => Some(DateFields::DE),
            "D" => Some(DateFields::D),
            "E" => Some(DateFields::E),
            "YM" => Some(DateFields::YM),
            "Y" => Some(DateFields::Y),
            "M" => Some(DateFields::M),
            _ => None,
        };
        builder.time_precision = match time {
            "hour" => Some(TimePrecision::Hour),
            "minute" => Some(TimePrecision::Minute),
            "second" => Some(TimePrecision::Second),
            digits => digits
                .parse::<u8>()
                .ok()
                .and_then(SubsecondDigits::try_from_int)
                .map(TimePrecision::Subsecond),
        };
        if builder.date_fields.is_some_and(|f| {
            matches!(
                f,
                DateFields::YMDE | DateFields::YMD | DateFields::YM | DateFields::Y
            )
        }) {
            builder.year_style = Some(if year == "auto" {
                YearStyle::Auto
            } else {
                YearStyle::Full
            });
        }
        let field_set = builder.build_composite_datetime().ok()?;
        let mut prefs = DateTimeFormatterPreferences::from(&locale(&tag));
        prefs.hour_cycle = match hour_cycle {
            "h12" => Some(HourCycle::H12),
            "h23" => Some(HourCycle::H23),
            _ => prefs.hour_cycle,
        };
        DateTimeFormatter::try_new(prefs, field_set).ok()
    });
    let Some(formatter) = formatter else {
        return Err(Exception::throw_range(
            &ctx,
            "these date options cannot be combined",
        ));
    };
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    let date = Date::try_new_iso(y, mo, d);
    let clock = Time::try_new(h, mi, s, milli * 1_000_000);
    match (date, clock) {
        (Ok(date), Ok(time)) => {
            let input: DateTime<Iso> = DateTime { date, time };
            // CLDR puts a narrow no-break space before "AM"/"PM"; V8 (Node,
            // Workers, Chrome) prints a plain space, which code expects.
            Ok(formatter
                .format(&input)
                .to_string()
                .replace('\u{202f}', " "))
        }
        _ => Err(Exception::throw_range(&ctx, "Invalid time value")),
    }
}
