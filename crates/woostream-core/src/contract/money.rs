//! Money and UTC timestamps as the Avro contract carries them.
//!
//! Money is `bytes` with logical type `decimal(24, 6)`: six decimal places hold every ISO 4217
//! currency and WooCommerce's un-rounded tax amounts; values with more places are rounded half to
//! even. Timestamps are `timestamp-millis`, always UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Scale of every money field in `schemas/` (`"scale": 6`).
pub const MONEY_SCALE: u32 = 6;

/// The largest amount `decimal(24, 6)` holds: 18 digits before the point, 6 after.
pub const MONEY_MAX: Decimal = Decimal::from_parts(0xA0FF_FFFF, 0x1BCE_CCED, 0x0000_D3C2, false, 6);

/// Why a text is not a money amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected an amount such as \"29.35\"")]
    NotAnAmount,
    #[error("the amount is beyond what decimal(24,6) holds (at most 18 digits before the point)")]
    OutOfRange,
}

/// An amount of money in the order's currency. Never a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Rounds to the contract's scale so that what is encoded is exactly what is kept.
    pub fn new(amount: Decimal) -> Money {
        Money(
            amount
                .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
                .normalize(),
        )
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }

    /// The amount, if the contract can carry it.
    pub fn checked(amount: Decimal) -> Option<Money> {
        (amount.abs() <= MONEY_MAX).then(|| Money::new(amount))
    }

    /// The sum, if it stays within what the contract holds (never a panic, never a wrong
    /// number).
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(Money::checked)
    }

    /// The sum of every amount, if each step stays within the contract.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Money>) -> Option<Money> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |total, m| total.checked_add(m))
    }

    /// Millionths of the currency unit, exact at the contract's scale; `None` beyond ±9.2e12.
    pub fn to_micros(&self) -> Option<i64> {
        let mut d = self.0;
        d.rescale(MONEY_SCALE);
        i64::try_from(d.mantissa()).ok()
    }

    pub fn from_micros(micros: i64) -> Money {
        Money(Decimal::new(micros, MONEY_SCALE).normalize())
    }

    /// A model estimate (CLV, expected order value) as money; NaN and infinities become zero.
    pub fn from_estimate(value: f64) -> Money {
        use rust_decimal::prelude::FromPrimitive;
        if !value.is_finite() {
            return Money::ZERO;
        }
        // An estimate beyond the contract is nonsense anyway: it is held at the limit. (Called
        // for every score: a float bound first, then the exact decimal one.)
        Decimal::from_f64(value.clamp(-1e18, 1e18))
            .map_or(Money::ZERO, |d| Money::new(d.clamp(-MONEY_MAX, MONEY_MAX)))
    }

    /// Unscaled big-endian two's-complement bytes, as Avro's decimal logical type stores them.
    pub fn to_avro_bytes(&self) -> Vec<u8> {
        let mut d = self.0;
        d.rescale(MONEY_SCALE);
        let unscaled = d.mantissa();
        let bytes = unscaled.to_be_bytes();
        // Shortest two's-complement form: drop leading bytes that only repeat the sign.
        let mut start = 0;
        while start < bytes.len() - 1 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        bytes[start..].to_vec()
    }

    pub fn from_avro_bytes(bytes: &[u8]) -> Result<Money, String> {
        if bytes.is_empty() || bytes.len() > 16 {
            return Err(format!(
                "decimal of {} bytes does not fit a money amount",
                bytes.len()
            ));
        }
        let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
        let mut buf = [fill; 16];
        buf[16 - bytes.len()..].copy_from_slice(bytes);
        let unscaled = i128::from_be_bytes(buf);
        Decimal::try_from_i128_with_scale(unscaled, MONEY_SCALE)
            .map(|d| Money(d.normalize()))
            .map_err(|e| format!("decimal out of range: {e}"))
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Money, Self::Err> {
        let s = s.trim();
        let amount = match Decimal::from_str(s) {
            Ok(d) => d,
            // Too many digits for any decimal, or an exponent: tell the two apart.
            Err(_) => match Decimal::from_scientific(s) {
                Ok(d) => d,
                Err(_) if looks_numeric(s) => return Err(MoneyError::OutOfRange),
                Err(_) => return Err(MoneyError::NotAnAmount),
            },
        };
        Money::checked(amount).ok_or(MoneyError::OutOfRange)
    }
}

/// A number too large for `Decimal` still reads as one: digits, a sign, a point, an exponent.
fn looks_numeric(s: &str) -> bool {
    !s.is_empty()
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_avro_bytes())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        struct MoneyVisitor;
        impl<'de> Visitor<'de> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Avro decimal bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Money, E> {
                Money::from_avro_bytes(v).map_err(E::custom)
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Money, E> {
                self.visit_bytes(&v)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Money, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(MoneyVisitor)
    }
}

/// Parses WooCommerce's `*_gmt` timestamps, which are UTC written without a zone
/// (`2017-03-22T19:28:02`). Offsets and a trailing `Z` are accepted too.
pub fn parse_wc_gmt(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // The common case first: ISO 8601 without a zone, parsed without a format string.
    if let Ok(naive) = s.parse::<NaiveDateTime>() {
        return Some(Utc.from_utc_datetime(&naive));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&naive));
    }
    None
}

/// serde adapter: `DateTime<Utc>` as Avro `timestamp-millis`.
pub mod ts_millis {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.timestamp_millis())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let ms = i64::deserialize(d)?;
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| de::Error::custom(format!("timestamp {ms} ms out of range")))
    }

    /// `Option<DateTime<Utc>>` as `["null", timestamp-millis]`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&t.timestamp_millis()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<i64>::deserialize(d)? {
                None => Ok(None),
                Some(ms) => DateTime::from_timestamp_millis(ms)
                    .map(Some)
                    .ok_or_else(|| de::Error::custom(format!("timestamp {ms} ms out of range"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_stay_within_decimal_24_6_or_are_refused() {
        let max: Money = "999999999999999999.999999".parse().unwrap();
        assert_eq!(max.amount(), MONEY_MAX);
        assert_eq!(Money::from_avro_bytes(&max.to_avro_bytes()), Ok(max));
        for beyond in [
            "1000000000000000000",
            "-1000000000000000000",
            "1e25",
            "79228162514264337593543950335",
            "792281625142643375935439503350",
        ] {
            assert_eq!(
                beyond.parse::<Money>(),
                Err(MoneyError::OutOfRange),
                "{beyond}"
            );
        }
        for not_money in ["", "abc", "12,50", "NaN"] {
            assert_eq!(
                not_money.parse::<Money>(),
                Err(MoneyError::NotAnAmount),
                "{not_money:?}"
            );
        }
        let half: Money = "600000000000000000".parse().unwrap();
        assert_eq!(half.checked_add(half), None);
        assert_eq!(Money::checked_sum([half, half]), None);
        assert_eq!(
            Money::checked_sum([half, Money::new(-half.amount())]),
            Some(Money::ZERO)
        );
        assert_eq!(Money::from_estimate(1e30).amount(), MONEY_MAX);
        assert_eq!(Money::from_estimate(-1e30).amount(), -MONEY_MAX);
    }

    #[test]
    fn money_bytes_round_trip_including_negative_and_sign_boundaries() {
        for s in [
            "0",
            "29.35",
            "-10.00",
            "0.000001",
            "127",
            "128",
            "-128",
            "-129",
            "3.3333333",
            "99999999999.999999",
        ] {
            let m: Money = s.parse().unwrap();
            let back = Money::from_avro_bytes(&m.to_avro_bytes()).unwrap();
            assert_eq!(m, back, "{s}");
        }
        // 29.35 at scale 6 is 29_350_000 = 0x01BFD870.
        assert_eq!(
            "29.35".parse::<Money>().unwrap().to_avro_bytes(),
            vec![0x01, 0xBF, 0xD8, 0x70]
        );
        // Rounded half to even at the sixth place.
        assert_eq!(
            "3.3333335".parse::<Money>().unwrap().to_string(),
            "3.333334"
        );
        assert_eq!(
            "-0.0000005".parse::<Money>().unwrap().to_avro_bytes(),
            vec![0]
        );
    }

    #[test]
    fn wc_gmt_dates_are_utc_without_zone() {
        let t = parse_wc_gmt("2017-03-22T19:28:02").unwrap();
        assert_eq!(t.to_rfc3339(), "2017-03-22T19:28:02+00:00");
        assert_eq!(
            parse_wc_gmt("2017-03-22T21:28:02+02:00").unwrap(),
            t,
            "an explicit offset is honoured"
        );
        assert_eq!(parse_wc_gmt("2017-03-22 19:28:02"), Some(t));
        assert_eq!(
            parse_wc_gmt("2017-03-22T19:28:02.5").map(|t| t.timestamp_millis() % 1000),
            Some(500)
        );
        assert_eq!(parse_wc_gmt(""), None);
        assert_eq!(parse_wc_gmt("yesterday"), None);
    }
}
