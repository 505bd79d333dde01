//! The Akamai backend against `AkamaiFake`.
