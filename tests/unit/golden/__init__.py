"""Golden data: what the WebSite machinery planned and did, recorded before the issue-8
refactor, so that the refactored code can be shown to plan and do exactly the same."""
