# Dutch dates in the same one style as English (see cohort/formats/en/formats.py): "2 dec 2026",
# "2 dec 2026, 13:50"; a decimal comma ("12,5"). Input formats are Django's Dutch ones.
DATE_FORMAT = "j b Y"
SHORT_DATE_FORMAT = DATE_FORMAT
DATETIME_FORMAT = "j b Y, H:i"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
TIME_FORMAT = "H:i"
DECIMAL_SEPARATOR = ","
THOUSAND_SEPARATOR = "."
NUMBER_GROUPING = 3
