"""What customers carry between channels and over time: reference and link codes, email codes, masking and retention."""
