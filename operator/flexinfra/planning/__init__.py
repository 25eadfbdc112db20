"""Pure planners, by concern (network, security group, server fleet, load balancer, floating
IP), each ``plan_<concern>(builder, intent, observed, ...)``; a kind's planner composes them
(``website.py``). Plain data in, a ``core.plan.Plan`` out: no I/O, no openstacksdk, no
pydantic."""
