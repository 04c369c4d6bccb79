"""What managers and editors read: the reports' figures, CSAT ratings and the KB-gap report."""
