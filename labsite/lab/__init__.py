"""The interactive lab: stored scenarios, the lab index page, users and groups."""
