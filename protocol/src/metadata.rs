//! What source metadata the outputs may carry: nothing (`strip`, the default) or a named
//! allow-list. Location, maker notes, serial numbers and everything else are never kept: the
//! engine writes a fresh Exif block holding only the kept fields, never a copy of the source's.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// One kind of metadata a job may keep in its outputs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeptMetadata {
    /// Exif `Copyright`.
    Copyright,
    /// Exif `Artist`.
    Artist,
    /// Exif `DateTimeOriginal` (and `OffsetTimeOriginal` when the source records one).
    CaptureTime,
    /// The ICC colour profile, embedded unchanged (else the pixels are converted to sRGB).
    Icc,
}

impl KeptMetadata {
    /// Every kind, in the order of the wire names.
    pub const ALL: [KeptMetadata; 4] =
        [KeptMetadata::Copyright, KeptMetadata::Artist, KeptMetadata::CaptureTime, KeptMetadata::Icc];

    /// The wire name: `copyright`, `artist`, `captureTime` or `icc`.
    pub fn name(self) -> &'static str {
        match self {
            KeptMetadata::Copyright => "copyright",
            KeptMetadata::Artist => "artist",
            KeptMetadata::CaptureTime => "captureTime",
            KeptMetadata::Icc => "icc",
        }
    }
}

/// Which source metadata the outputs carry: `"strip"` (the default: none; a colour profile is
/// converted away, the pixels written as sRGB) or `{"keep": ["copyright", "artist",
/// "captureTime", "icc"]}` (any of them). GPS, maker notes and serial numbers are never kept.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"keep": ["copyright", "artist"]}))]
pub enum MetadataPolicy {
    /// Nothing: no Exif, no XMP, no colour profile.
    #[default]
    Strip,
    /// Only these, where the source has them (each named once).
    Keep(#[serde(deserialize_with = "each_once")] BTreeSet<KeptMetadata>),
}

/// The keep list, refused when it names a kind twice (its schema's `uniqueItems`).
fn each_once<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<KeptMetadata>, D::Error> {
    let list = Vec::<KeptMetadata>::deserialize(d)?;
    let set: BTreeSet<KeptMetadata> = list.iter().copied().collect();
    if set.len() != list.len() {
        return Err(serde::de::Error::custom("the keep list names a kind of metadata twice"));
    }
    Ok(set)
}

impl MetadataPolicy {
    /// Whether `what` is kept.
    pub fn keeps(&self, what: KeptMetadata) -> bool {
        matches!(self, MetadataPolicy::Keep(kept) if kept.contains(&what))
    }

    /// `keep` with an empty list is `strip`: one spelling for one behaviour, so both name the
    /// same job.
    pub fn normalized(self) -> Self {
        match self {
            MetadataPolicy::Keep(kept) if kept.is_empty() => MetadataPolicy::Strip,
            other => other,
        }
    }

    /// Whether this is the default, `strip` (left out of messages, so their ids stay as before).
    pub fn is_strip(&self) -> bool {
        *self == MetadataPolicy::Strip
    }
}

/// The setting's spelling: `strip` or `keep:copyright,artist,captureTime,icc`.
impl FromStr for MetadataPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("strip") {
            return Ok(MetadataPolicy::Strip);
        }
        let Some(list) = s.strip_prefix("keep:") else {
            return Err(format!("{s:?}: expected `strip` or `keep:` and a list such as `keep:copyright,artist`"));
        };
        let kept = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                KeptMetadata::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(n)).ok_or_else(|| {
                    let names: Vec<_> = KeptMetadata::ALL.iter().map(|k| k.name()).collect();
                    format!("{n:?} cannot be kept: the choices are {}", names.join(", "))
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(MetadataPolicy::Keep(kept).normalized())
    }
}

impl fmt::Display for MetadataPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataPolicy::Strip => f.write_str("strip"),
            MetadataPolicy::Keep(kept) => {
                let names: Vec<_> = kept.iter().map(|k| k.name()).collect();
                write!(f, "keep:{}", names.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shapes_are_a_word_or_a_keep_list() {
        let strip: MetadataPolicy = serde_json::from_str(r#""strip""#).expect("strip");
        assert_eq!(strip, MetadataPolicy::Strip);
        let keep: MetadataPolicy = serde_json::from_str(r#"{"keep":["icc","copyright","captureTime"]}"#).expect("keep");
        assert!(keep.keeps(KeptMetadata::Copyright) && keep.keeps(KeptMetadata::CaptureTime));
        assert!(!keep.keeps(KeptMetadata::Artist));
        assert_eq!(serde_json::to_string(&keep).expect("json"), r#"{"keep":["copyright","captureTime","icc"]}"#);
        for refused in
            [r#"{"keep":["gps"]}"#, r#""keep""#, r#"{"keep":"copyright"}"#, r#""none""#, r#"{"keep":["icc","icc"]}"#]
        {
            assert!(serde_json::from_str::<MetadataPolicy>(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_setting_spelling_round_trips() {
        assert_eq!("strip".parse(), Ok(MetadataPolicy::Strip));
        assert_eq!("keep:".parse(), Ok(MetadataPolicy::Strip), "an empty list keeps nothing");
        let p: MetadataPolicy = "keep: artist , COPYRIGHT".parse().expect("parses");
        assert_eq!(p.to_string(), "keep:copyright,artist");
        assert_eq!(p.to_string().parse(), Ok(p));
        let err = "keep:copyright,gps".parse::<MetadataPolicy>().expect_err("no location");
        assert!(err.contains("\"gps\" cannot be kept"), "{err}");
        assert!("all".parse::<MetadataPolicy>().is_err());
    }
}
