"""The foundation: errors, settings, argument checks, schedules, safe printing, atomic writes."""
