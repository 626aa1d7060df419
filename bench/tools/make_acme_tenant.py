"""Regenerate the binary documents (.pdf, .docx) of the bundled "Acme" sample tenant.

The tenant lives in apps/demo/acme/ and is a folder tree for the files connector:
`.groups.json` at the root, `.access.json` per folder, and the documents.  The
.md, .txt and .html documents and the JSON files are committed as plain files and
edited by hand; this script only rebuilds the PDFs and Word files from the text
held below, so that their content can be reviewed in a diff of this script.

Output is deterministic: PDFs carry a fixed creation date, producer and file id;
.docx files carry fixed core properties and are re-zipped with fixed timestamps.
Running the script twice gives byte-identical files (with the same fpdf2 and
python-docx versions).

    .venv/bin/python bench/tools/make_acme_tenant.py            # write the files
    .venv/bin/python bench/tools/make_acme_tenant.py --check    # exit 1 if any differs
"""

# ruff: noqa: E501  (document prose is kept as long literal lines)
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "apps" / "demo" / "acme"

# Block kinds: ("h2", text) ("p", text) ("bullets", [text]) ("numbers", [text])
# ("table", [[header...], [row...], ...]) ("pagebreak", "")
Block = tuple[str, object]


@dataclass(frozen=True)
class Doc:
    path: str  # relative to ROOT
    title: str  # rendered as the first heading (Heading 1)
    author: str
    date: datetime
    blocks: tuple[Block, ...]
    subject: str = ""
    footer: str = ""  # PDF only: classification line in the footer


def d(y: int, m: int, day: int) -> datetime:
    return datetime(y, m, day, 9, 0, 0, tzinfo=UTC)


def doc(path, title, author, date, *blocks, subject="", footer=""):
    return Doc(path, title, author, date, tuple(blocks), subject, footer)


H2, P, UL, OL, TABLE, BREAK = "h2", "p", "bullets", "numbers", "table", "pagebreak"

# --------------------------------------------------------------------------- #
# Content
# --------------------------------------------------------------------------- #

DOCS: list[Doc] = [
    # ------------------------------------------------------------------ handbook
    doc(
        "handbook/code-of-conduct.pdf",
        "Code of Conduct",
        "Acme People team",
        d(2025, 12, 1),
        (P, "Version 4.0. Effective 1 January 2026. Approved by the Board of Directors on "
            "16 September 2025. Owner: Kate Osei, VP People, with Sofia Marchetti, General Counsel."),
        (P, "This Code of Conduct explains how everyone at Acme is expected to behave: employees, "
            "contractors, interns and members of the Board. It does not list every situation you "
            "could face. When the Code does not answer a question, ask yourself whether the action "
            "is legal, whether it is honest, and whether you would be comfortable seeing it described "
            "in a newspaper. If the answer to any of these is no, do not do it, and ask for advice."),
        (H2, "1. Respect at work"),
        (P, "Acme does not tolerate harassment, bullying or discrimination on the basis of race, "
            "colour, religion, sex, gender identity, sexual orientation, age, disability, national "
            "origin, accent, pregnancy, veteran status or any other characteristic protected by law. "
            "This applies in offices, at customer sites, at company events, in Slack and on video "
            "calls, and at social events that are connected to work."),
        (P, "Managers carry a higher responsibility. A manager who sees or hears about behaviour that "
            "may break this section must report it to the People team within 2 working days, even if "
            "the person affected asks them not to."),
        (H2, "2. Conflicts of interest"),
        (P, "A conflict of interest arises when your personal interests could influence, or appear to "
            "influence, decisions you make for Acme. Common examples are owning more than 1% of a "
            "supplier or competitor, hiring or managing a close relative or partner, and a second job "
            "with a company in the commerce or payments industry."),
        (UL, [
            "Disclose any actual or potential conflict in PeopleHub as soon as it arises.",
            "Every employee confirms their disclosures once a year, by 31 January.",
            "Outside employment and board seats need written approval from your VP and the People team.",
            "You may not approve purchases, hires or pay decisions that involve a person you have a close personal relationship with.",
        ]),
        (H2, "3. Gifts, hospitality and anti-bribery"),
        (P, "You may accept modest gifts and hospitality from customers, partners and suppliers, up to "
            "a total value of $100 per business partner per calendar year. Never accept cash, gift "
            "cards or anything offered during an open tender or negotiation. Anything above the limit "
            "must be declined politely or handed to the People team, who will donate it to charity."),
        (P, "Acme does not pay or accept bribes or kickbacks of any amount, directly or through third "
            "parties such as agents and resellers. Facilitation payments are prohibited, even where they "
            "are customary. Any payment to a government body or official needs the CFO's approval, "
            "whatever the amount."),
        (H2, "4. Protecting information"),
        (P, "Treat customer data, shopper data and Acme's confidential information with care. Follow "
            "the IT Security Basics page and the data classification levels Public, Internal, "
            "Confidential and Restricted. Do not discuss confidential matters such as unannounced "
            "products, financial results, acquisitions or personnel matters in public places or on "
            "social media, and do not share them with friends or family."),
        (P, "You may not trade in the shares of any company, including customers, partners and possible "
            "acquisition targets, while you know material information about it that has not been made "
            "public."),
        (H2, "5. Fair dealing"),
        (P, "Compete hard but fairly. Do not make false claims about competitors, do not obtain their "
            "confidential information, and do not discuss prices, territories or customers with them. "
            "Sales materials must be accurate: only quote customer results that the customer has approved "
            "for external use."),
        (H2, "6. Speaking up"),
        (P, "If you believe something at Acme breaks the law, this Code or our policies, raise it. You can "
            "talk to your manager, your HR business partner, the People team or Legal, or use the Speak Up "
            "line, which is run by an independent provider and can be used anonymously:"),
        (UL, [
            "Email: ethics@acme.example",
            "Phone: +1 800 555 0142 (free, 24 hours a day, in English, Spanish and Irish)",
            "Web form: linked from the PeopleHub home page",
        ]),
        (P, "Acme strictly prohibits retaliation against anyone who raises a concern in good faith or "
            "takes part in an investigation. Retaliation is itself a serious breach of this Code, even "
            "when the original concern turns out to be unfounded."),
        (H2, "7. Investigations and consequences"),
        (P, "The People team, with Legal where needed, investigates every report. We aim to complete "
            "investigations within 30 days and tell the person who reported the outcome as far as "
            "privacy allows. Breaches of this Code can lead to disciplinary action up to and including "
            "dismissal, and, for contractors, the end of their assignment."),
        (H2, "8. Acknowledgement"),
        (P, "Every employee and contractor must read this Code and confirm in PeopleHub that they have "
            "done so: new joiners in their first week, and everyone else each year by 28 February. "
            "Questions about the Code go to ethics@acme.example or to Kate Osei."),
        subject="Acme Code of Conduct, version 4.0",
        footer="Acme - Internal",
    ),
    doc(
        "handbook/onboarding-checklist.docx",
        "New Joiner Onboarding Checklist",
        "Acme People team",
        d(2026, 1, 5),
        (P, "Welcome to Acme. This checklist tells you and your manager what happens before your first "
            "day, during your first week and over your first 90 days. Your onboarding buddy and the People "
            "team (people@acme.example) are there to help at every step."),
        (H2, "Before your first day"),
        (UL, [
            "Sign your offer documents and complete your personal details in PeopleHub.",
            "US employees: bring identity documents for the I-9 form; it must be completed within 3 business days of your start date.",
            "Your laptop is shipped 5 business days before your start date (remote joiners) or is waiting at reception (office joiners).",
            "Your manager assigns you an onboarding buddy from another team and tells you their name by email.",
        ]),
        (H2, "Day 1"),
        (UL, [
            "09:30 Welcome at reception (Portland, Austin or Dublin) or on the welcome video call for remote joiners.",
            "10:00 IT setup: you receive your two YubiKeys, set up Okta, 1Password and Google Workspace with the IT team.",
            "12:00 Lunch with your buddy, paid by Acme (team meal limit of $60 per person).",
            "14:00 Meet your manager: role expectations, your first-week plan and your 30/60/90-day goals.",
            "New joiner orientation with the People team runs every other Monday at 15:00 Pacific time.",
        ]),
        (H2, "First week"),
        (UL, [
            "Complete security awareness training (about 45 minutes) and confirm the Code of Conduct in PeopleHub.",
            "Read the handbook pages on leave, expenses, travel and remote work.",
            "Meet your HR business partner for 30 minutes.",
            "Claim your home office stipend of $500 in SpendWise if you work hybrid or remote (within 90 days).",
            "Join #general, #ask-people, #it-help and your team channels in Slack.",
        ]),
        (H2, "First 30 days"),
        (UL, [
            "Enrol in benefits within 30 days of your start date; after that you must wait for open enrolment in November.",
            "Set up your 401(k) or pension contributions.",
            "Have weekly one-to-ones with your manager and a check-in with your buddy every week.",
            "Shadow a customer call or a support shift, whatever your role.",
        ]),
        (H2, "30, 60 and 90 days"),
        (P, "At 30 days your manager reviews your first goals with you. At 60 days you should own at least "
            "one piece of work end to end. At 90 days your manager holds a short onboarding review and "
            "confirms the end of your probation period; in Dublin the probation period is 6 months. The People "
            "team sends a short survey at 30 and 90 days; your answers are anonymous and help us improve "
            "onboarding."),
        (H2, "First pay"),
        (P, "Acme pays US employees twice a month, on the 15th and the last working day of the month, and "
            "Dublin employees monthly on the last working day. If you join after payroll closes on the 20th, "
            "your first partial month is paid with the following month's salary."),
        subject="Checklist for new employees",
    ),
    doc(
        "handbook/benefits-overview.docx",
        "Benefits Overview 2026",
        "Acme People team",
        d(2025, 10, 20),
        (P, "This overview summarises the benefits Acme offers in 2026. The plan documents are the legal "
            "reference; if anything here differs from them, the plan documents win. Open enrolment for 2026 "
            "ran from 3 to 14 November 2025. New employees must enrol within 30 days of their start date."),
        (H2, "Health insurance (US)"),
        (P, "Acme offers two medical plans through Cascade Health. Both include prescription drugs and "
            "mental health care, and both are available to employees, spouses or domestic partners, and "
            "children up to age 26."),
        (TABLE, [
            ["Plan", "Acme pays (employee)", "Acme pays (dependents)", "Deductible (individual)"],
            ["Cascade PPO", "90% of premium", "75% of premium", "$500"],
            ["Cascade HDHP with HSA", "100% of premium", "80% of premium", "$1,700"],
        ]),
        (P, "On the HDHP, Acme contributes $1,000 a year to your health savings account (HSA) for individual "
            "cover, or $2,000 for family cover, paid in two instalments in January and July. Dental and vision "
            "cover through Cascade are 100% paid by Acme for employees and dependents."),
        (H2, "Health insurance (Ireland)"),
        (P, "Dublin employees receive private health cover for themselves and their dependents, fully paid "
            "by Acme. The benefit-in-kind tax is deducted through payroll as required by Irish law."),
        (H2, "Retirement"),
        (UL, [
            "US: 401(k) plan through Fidelity. Acme matches 100% of your contributions up to 4% of your base salary. The match vests immediately.",
            "Ireland: defined contribution pension. Acme contributes 6% of base salary when you contribute at least 4%.",
            "You can change your contribution rate at any time in PeopleHub; changes apply from the next payroll.",
        ]),
        (H2, "Insurance"),
        (UL, [
            "Life insurance of 2 times base salary, up to $750,000, paid by Acme.",
            "Short-term disability: 100% of base salary for up to 12 weeks.",
            "Long-term disability: 60% of base salary after 90 days, up to $15,000 a month.",
        ]),
        (H2, "Time off and family"),
        (P, "Paid time off, sick leave and the 16 weeks of fully paid parental leave are described in the "
            "Leave Policy. Acme also reimburses up to $10,000 over your employment for adoption, fertility "
            "and surrogacy costs."),
        (H2, "Wellbeing and learning"),
        (UL, [
            "Wellness allowance: $60 per month (EUR 55 in Dublin) for gym, sports, classes or meditation apps, paid through payroll.",
            "Employee assistance programme (EAP): 6 free confidential counselling sessions per issue per year, for you and your household, 24/7 on +1 800 555 0177.",
            "Learning budget: $1,500 per year for courses, books, conferences and certifications, approved by your manager.",
            "Commuter benefits: a TriMet pass in Portland, a CapMetro pass in Austin, or the TaxSaver scheme in Dublin.",
        ]),
        (H2, "Questions"),
        (P, "Ask people@acme.example or #ask-people. For claims and coverage questions, call Cascade Health "
            "directly on the number on your member card."),
        subject="Summary of employee benefits for 2026",
    ),
    # --------------------------------------------------------------- engineering
    doc(
        "engineering/engineering-onboarding.docx",
        "Engineering Onboarding Guide",
        "Raj Patel",
        d(2026, 1, 12),
        (P, "This guide is for engineers joining Acme, whether as employees or contractors. It complements "
            "the company-wide New Joiner Onboarding Checklist. Your engineering onboarding buddy is an engineer "
            "from your own team; your manager tells you who it is on day 1."),
        (H2, "Week 1: your environment"),
        (UL, [
            "Run acmectl setup on your laptop. It installs Go 1.23, JDK 21, Node 20, Python 3.12, Docker and the Acme command-line tools. It takes about 40 minutes.",
            "Request access in Okta: the group eng-default gives you GitHub, Jira, Grafana (read-only), the staging Kubernetes cluster and LaunchDarkly (staging).",
            "Read the Architecture Overview, the Coding Standards and the Deploy Process.",
            "Ship your first pull request by day 3: fix something small in the developer docs.",
        ]),
        (H2, "Weeks 2 to 4: your first real change"),
        (P, "Your manager gives you a starter ticket that touches one service end to end: code, tests, a "
            "feature flag and a production deploy. Pair with your buddy on the first deploy. You present what "
            "you learned at your team's demo at the end of week 4."),
        (H2, "Production access"),
        (P, "Production access is granted after 30 days, once you have completed security training and "
            "your manager requests it in Okta (group eng-prod-readonly first, eng-prod-deploy after your "
            "first supervised deploy). Access to production databases is limited to the Platform team and "
            "is always just-in-time, for a maximum of 4 hours, through Teleport."),
        (P, "Contractors do not receive production access. They work in staging and deploy through the "
            "normal pipeline, where an employee approves the production promotion. Contractors also do not "
            "have access to security incident reports."),
        (H2, "On-call"),
        (P, "After about 6 weeks you shadow two on-call shifts with your team's primary, then join the "
            "rotation. Read the On-Call Runbook before your first shadow shift. On-call pay is $400 per week "
            "as primary and $150 per week as secondary."),
        (H2, "People to meet in your first month"),
        (UL, [
            "Your team lead and product manager.",
            "Hector Ruiz, Platform lead, for how we run Kubernetes and databases.",
            "Leo Fischer, Security, for the secure coding session (every second Thursday).",
            "Grace Kim, for the frontend and design system walkthrough if you work on the merchant dashboard.",
        ]),
        (H2, "Rituals"),
        (UL, [
            "Monday 10:00 Pacific: on-call handover.",
            "Wednesday 11:00 Pacific: Engineering operations review (incidents and postmortems).",
            "Last Friday of the month: Engineering all-hands and demo day.",
        ]),
        subject="How new engineers get productive at Acme",
    ),
    doc(
        "engineering/api-versioning-policy.pdf",
        "Public API Versioning Policy",
        "Raj Patel",
        d(2025, 10, 1),
        (P, "Owner: CTO office. Applies to every public Acme API used by merchants and partners. Effective "
            "1 October 2025, when the dated API version 2025-10-01 was released."),
        (H2, "Dated versions"),
        (P, "Acme's public API is versioned by date. Clients choose a version by sending the header "
            "Acme-Version with every request, for example Acme-Version: 2025-10-01. A request without the "
            "header uses the version pinned in the merchant's or app's settings. We release at most two new "
            "dated versions a year, in April and October."),
        (TABLE, [
            ["Version", "Released", "Status", "Supported until"],
            ["2025-10-01", "1 Oct 2025", "Current", "at least 1 Oct 2027"],
            ["2025-04-01", "1 Apr 2025", "Supported", "1 Oct 2026"],
            ["v1 (path based)", "2021", "Deprecated", "30 June 2026 (shutdown)"],
        ]),
        (H2, "What counts as a breaking change"),
        (UL, [
            "Removing or renaming an endpoint, field, enum value or query parameter.",
            "Changing the type or format of a field, or making an optional request field required.",
            "Changing error codes, default values, pagination or rate-limit behaviour.",
        ]),
        (P, "Breaking changes ship only in a new dated version. Adding endpoints, optional fields, new enum "
            "values in responses and new webhook event types are not breaking and can ship at any time; "
            "clients must ignore fields they do not know."),
        (H2, "Deprecation and notice"),
        (P, "Every dated version is supported for at least 12 months after its successor is released. We "
            "announce a retirement at least 12 months in advance by email to the technical contacts of every "
            "merchant and partner app that called the version in the last 90 days. Responses from deprecated "
            "versions include the Deprecation and Sunset headers with the retirement date."),
        (H2, "Shutting down v1"),
        (P, "The v1 path-based API will be switched off on 30 June 2026. As of January 2026, 11% of API "
            "traffic still uses v1, from 164 merchants and 23 partner apps. To help the remaining clients "
            "migrate we will run two one-hour brownouts, during which v1 returns HTTP 410: on 12 May 2026 and "
            "26 May 2026, both from 17:00 to 18:00 UTC. Partner managers contact every partner still on v1 "
            "each month until they have migrated."),
        (H2, "Internal rules"),
        (UL, [
            "API changes are reviewed by the API review group (every Tuesday) before work starts.",
            "Each version change is written as a version gate in api-gateway; no breaking change may be made inside a handler.",
            "Contract tests for every supported version run on every pull request.",
            "Exceptions to this policy need the CTO's written approval.",
        ]),
        subject="How Acme versions and retires its public API",
        footer="Acme - Internal (Engineering)",
    ),
    doc(
        "engineering/platform/capacity-plan-2026.pdf",
        "Capacity Plan 2026",
        "Hector Ruiz",
        d(2026, 1, 20),
        (P, "Owner: Hector Ruiz, Platform lead. Reviewed with Raj Patel on 20 January 2026. This plan sets "
            "the capacity we need for Black Friday and Cyber Monday (BFCM) 2026 and the milestones to get "
            "there. It is restricted to the Platform team."),
        (H2, "Demand forecast"),
        (P, "BFCM 2025 peaked at 2,400 checkouts per minute on 28 November 2025. Order volume grew 31% in "
            "2025. With the FY2026 revenue plan (+20%) and the merchants already signed for Q1, we forecast a "
            "BFCM 2026 peak of 3,600 checkouts per minute. We plan capacity for 4,000 checkouts per minute "
            "and load test at 4,400 (110% of plan)."),
        (TABLE, [
            ["Component", "Today", "Target for BFCM 2026", "Done by"],
            ["orders-db primary", "r6i.4xlarge (16 vCPU, 128 GB)", "r6i.8xlarge (32 vCPU, 256 GB)", "30 Jun 2026"],
            ["orders-db storage", "3.1 TB", "4.2 TB provisioned 6 TB", "30 Sep 2026"],
            ["PgBouncer", "6 pods x 400 connections", "8 pods x 400 connections", "31 Aug 2026"],
            ["Kafka (MSK)", "6 brokers", "9 brokers", "15 Oct 2026"],
            ["prod-usw2 nodes (peak)", "140", "210", "Karpenter limit raised 1 Oct"],
            ["Redis", "3 shards", "5 shards", "30 Sep 2026"],
        ]),
        (H2, "Database"),
        (P, "orders-db is the main constraint. CPU peaked at 71% during BFCM 2025. Moving the primary and "
            "the synchronous replica to r6i.8xlarge gives us headroom to about 5,000 checkouts per minute. "
            "Storage grows by about 90 GB per month; we will provision 6 TB in September. The Insights read "
            "traffic moves from orders-db-2 to the new CDC pipeline by 31 July 2026, removing about 15% of "
            "read load."),
        (H2, "Load tests"),
        (UL, [
            "15 April 2026: baseline test at 3,000 checkouts per minute in the perf environment.",
            "15 July 2026: test at 4,000 checkouts per minute after the database upgrade.",
            "15 October 2026: full production-scale test at 4,400 checkouts per minute, 05:00-06:00 Pacific.",
            "Pass criteria: p99 checkout latency under 900 ms and error rate under 0.1%.",
        ]),
        (H2, "Cost"),
        (P, "The FY2026 budget for AWS hosting is $9.6M, which must stay below 6.8% of revenue. The upgrades "
            "above add about $41,000 per month from July. We offset this with a new three-year Compute Savings "
            "Plan (estimated saving $55,000 per month from April) and by moving staging to Graviton (arm64) "
            "nodes, saving about $12,000 per month."),
        (H2, "Risks"),
        (UL, [
            "Platform is two engineers short; the hiring plan includes 5 Platform roles in 2026.",
            "r6i.8xlarge capacity in us-west-2 must be reserved by 1 September.",
            "The Kubernetes 1.31 upgrade in March must not slip into the BFCM freeze (from 19 November 2026).",
        ]),
        subject="Platform capacity for BFCM 2026",
        footer="Acme - Restricted (Platform)",
    ),
    doc(
        "engineering/security-incidents/pentest-findings-2025.docx",
        "Penetration Test Findings 2025",
        "Leo Fischer",
        d(2025, 12, 5),
        (P, "Classification: Restricted. Acme Engineering employees only; not shared with contractors. "
            "Owner: Leo Fischer, Security Engineer. Status as of 5 December 2025, after the retest."),
        (H2, "Scope and method"),
        (P, "Redline Security performed Acme's annual external penetration test from 6 to 17 October 2025. "
            "Scope: the public API (api.acme.example), the merchant dashboard, the Acme Checkout widget, the "
            "partner OAuth flow and the staging AWS account. The testers had two merchant test accounts with "
            "different roles and a partner sandbox. Social engineering was out of scope."),
        (H2, "Summary of findings"),
        (TABLE, [
            ["Severity", "Found", "Fixed", "Fix deadline (policy)"],
            ["Critical", "0", "0", "7 days"],
            ["High", "1", "1", "30 days"],
            ["Medium", "3", "2", "90 days"],
            ["Low", "5", "3", "180 days"],
        ]),
        (H2, "High: cross-merchant access to order exports (RED-2025-01)"),
        (P, "The endpoint GET /v2/exports/{export_id} checked that the caller was signed in but not that the "
            "export belonged to the caller's merchant. A user of one merchant who knew another merchant's "
            "export ID could download that export. Export IDs are random UUIDs, which made exploitation "
            "unlikely, and our logs show no cross-merchant downloads in the previous 12 months. Fixed on "
            "24 October 2025 by adding the merchant check in the exports handler and a shared authorisation "
            "middleware; confirmed by Redline's retest on 2 December 2025."),
        (H2, "Medium findings"),
        (UL, [
            "RED-2025-02: merchant dashboard session cookie without SameSite=Strict. Fixed 4 November 2025.",
            "RED-2025-03: tax-service returned stack traces in error responses in staging. Fixed 30 October 2025.",
            "RED-2025-04: no rate limit on the password reset endpoint. Open; due 15 January 2026, owner Grace Kim.",
        ]),
        (H2, "Low findings"),
        (P, "Five low findings concerned missing security headers on two marketing pages, a verbose server "
            "banner, an outdated jQuery version on the legacy status page, an overly long OAuth authorisation "
            "code lifetime (10 minutes, now 60 seconds) and TLS 1.0 still being accepted by one staging load "
            "balancer. Three are fixed; the remaining two are due by 15 April 2026."),
        (H2, "Next steps"),
        (UL, [
            "Add an automated test that calls every object endpoint with another merchant's credentials (owner: Leo Fischer, 31 January 2026).",
            "Quarterly internal review of authorisation checks on new endpoints.",
            "Next external test: October 2026, including the Acme Assist feature.",
        ]),
        subject="Results of the October 2025 external penetration test",
    ),
    # ------------------------------------------------------------------- finance
    doc(
        "finance/revenue-recognition-notes.docx",
        "Revenue Recognition Notes (ASC 606)",
        "Ivy Nguyen",
        d(2026, 1, 9),
        (P, "These notes summarise how Acme recognises revenue under ASC 606. They are written for the "
            "Finance team and for the auditors' walkthrough starting 19 January 2026. Prepared by Ivy Nguyen, "
            "reviewed by Dan Okafor."),
        (H2, "Performance obligations"),
        (TABLE, [
            ["Obligation", "Recognition", "Notes"],
            ["Platform subscription (Starter, Growth, Enterprise)", "Ratably over the subscription term", "Starts on the contract start date, not go-live"],
            ["Add-ons (Insights, Assist, storefronts)", "Ratably over the term", "Same pattern as the platform fee"],
            ["Overage", "In the month the orders are processed", "Billed monthly in arrears"],
            ["Implementation fees", "Ratably over the initial contract term", "Not distinct from the subscription"],
            ["Data migration (Professional Services)", "As the work is performed", "Distinct; input method based on hours"],
        ]),
        (H2, "Discounts and multi-year contracts"),
        (P, "Discounts are allocated across all performance obligations in proportion to their standalone "
            "selling prices. For multi-year contracts with annual price increases, the total contract value is "
            "recognised on a straight-line basis over the full term only where the customer is committed for "
            "all years; otherwise each year is treated as a separate contract."),
        (H2, "SLA credits"),
        (P, "SLA credits are variable consideration and reduce revenue in the period in which the service "
            "failure occurs, not when the credit is claimed. For the outage of 14 November 2025 we recorded "
            "$96,500 of SLA credits as a reduction of Q4 FY2025 revenue, plus a reserve of $7,100 for the "
            "goodwill credits approved by the executive team."),
        (H2, "Costs to obtain a contract"),
        (P, "Sales commissions on new business are capitalised and amortised over 4 years, which is the "
            "expected customer life. Commissions on renewals are expensed when earned, because the renewal "
            "commission rate is commensurate with the initial rate. Partner referral fees are treated in the "
            "same way as commissions."),
        (H2, "Month-end close"),
        (UL, [
            "Billing run: first working day of the month.",
            "Revenue schedule review and deferred revenue roll-forward: working day 3.",
            "Close complete and flash results to the CFO: working day 5.",
            "Management accounts to budget owners: by working day 10.",
        ]),
        (H2, "Open questions for the auditors"),
        (UL, [
            "Whether the Acme Assist promotion (free on Enterprise until 31 December 2026) creates a material right.",
            "Treatment of the euro price sheet's fixed exchange rate of EUR 0.92 per USD for 2026.",
        ]),
        subject="Finance team notes on ASC 606 revenue recognition",
    ),
    doc(
        "finance/q4-fy2025-results-draft.pdf",
        "Q4 FY2025 Results (Draft)",
        "Dan Okafor",
        d(2026, 1, 28),
        (P, "DRAFT version 3, 28 January 2026. Unaudited. For Finance and the executive team; final figures "
            "will be presented to the Board on 10 March 2026 after the external audit. Do not forward."),
        (H2, "Headlines"),
        (UL, [
            "Q4 FY2025 revenue of $33.8M, up 21% year on year (Q4 FY2024: $27.9M).",
            "FY2025 revenue of $118.3M, up 21% (FY2024: $97.8M).",
            "Annual recurring revenue (ARR) of $131.5M at 31 December 2025.",
            "1,912 customers, of which 214 on Enterprise plans.",
            "Net revenue retention 112%, gross revenue retention 92%.",
        ]),
        (H2, "Quarterly revenue"),
        (TABLE, [
            ["Quarter", "Revenue", "Gross margin", "Operating income (loss)"],
            ["Q1 FY2025", "$26.9M", "73.0%", "$(0.9)M"],
            ["Q2 FY2025", "$28.1M", "73.4%", "$0.4M"],
            ["Q3 FY2025", "$29.5M", "73.3%", "$1.5M"],
            ["Q4 FY2025", "$33.8M", "72.8%", "$(1.2)M"],
            ["FY2025", "$118.3M", "73.1%", "$(0.2)M"],
        ]),
        (H2, "Comments on Q4"),
        (P, "Revenue was $0.6M above the Q4 forecast, driven by BFCM overage: merchants processed 31% more "
            "orders than in Q4 FY2024. Revenue is shown net of $96,500 of SLA credits owed to 23 Enterprise "
            "customers for the checkout outage of 14 November 2025."),
        (P, "Gross margin fell to 72.8% because of BFCM hosting costs (AWS was $2.6M in the quarter) and the "
            "SLA credits. The Q4 operating loss of $1.2M includes $0.9M of one-off M&A advisory and legal costs "
            "and $0.4M of year-end bonuses accrued above plan. Excluding one-off costs, Q4 operating income "
            "would have been $0.1M."),
        (H2, "Cash"),
        (P, "Cash and equivalents were $86.4M at 31 December 2025, up from $83.3M at 30 September. Q4 free cash "
            "flow was $3.1M, helped by annual Enterprise invoices issued in October. Days sales outstanding "
            "were 41 days (Q3: 44 days)."),
        (H2, "Open items before final"),
        (UL, [
            "Auditor review of the commission capitalisation true-up (estimated impact +/- $0.2M).",
            "Final confirmation of SLA credit claims; the claim window closes 14 December plus 30 days.",
            "Bad debt reserve for two Starter customers in administration ($38,000).",
        ]),
        subject="Draft Q4 and full-year FY2025 financial results",
        footer="Acme - Confidential (Finance) - DRAFT",
    ),
    # ------------------------------------------------------------------------ hr
    doc(
        "hr/performance-review-calibration.docx",
        "Performance Review Calibration Guide",
        "Carol Diaz",
        d(2026, 2, 2),
        (P, "This guide is for the People team and the facilitators of calibration sessions in the 2025 "
            "review cycle. Calibration sessions run from 23 February to 6 March 2026 and ratings are locked "
            "on 13 March 2026. Owner: Carol Diaz; approved by Kate Osei."),
        (H2, "Purpose"),
        (P, "Calibration makes sure that the same rating means the same thing across teams and managers. "
            "Managers present their draft ratings; the group challenges them with evidence. The output is a "
            "final rating for every employee and a decision on every promotion nomination."),
        (H2, "Expected distribution"),
        (P, "The distribution below is guidance for departments of more than 30 people, not a quota. A "
            "department that differs by more than 5 points in any rating must explain why in the session notes."),
        (TABLE, [
            ["Rating", "Guidance", "Merit increase range"],
            ["Exceptional", "about 5%", "7% to 9%"],
            ["Exceeds", "about 20%", "4.5% to 6%"],
            ["Meets", "about 60%", "2.5% to 3.5%"],
            ["Partially Meets", "about 12%", "0% to 1%"],
            ["Below", "about 3%", "0%"],
        ]),
        (P, "Within each range, people lower in their salary band (compa-ratio below 0.95) get the upper end "
            "of the range, and people above the band midpoint (compa-ratio above 1.05) the lower end. "
            "Promotions add a separate increase of 8% to 12%, funded from the 1.0% promotion budget."),
        (H2, "Session schedule"),
        (TABLE, [
            ["Department", "Date", "Facilitator"],
            ["Engineering and Product", "23-24 February 2026", "Carol Diaz"],
            ["Sales", "26 February 2026", "Carol Diaz"],
            ["Customer Support and Success", "2 March 2026", "Kate Osei"],
            ["Finance, People and Marketing", "4 March 2026", "Kate Osei"],
            ["Directors and VPs (cross-company)", "6 March 2026", "Kate Osei with Erin Walsh"],
        ]),
        (H2, "Running the session"),
        (UL, [
            "Send the pre-read (draft ratings, distribution, promotion cases) 3 working days before.",
            "Discuss every Exceptional, Partially Meets and Below rating, and every promotion case.",
            "Ask for specific examples; reject ratings supported only by personality descriptions.",
            "Watch for recency bias, for remote employees rated lower than office colleagues, and for people on parental leave during the year.",
            "Record every change and the reason in the calibration sheet in the People folder.",
        ]),
        (H2, "After calibration"),
        (P, "Managers receive final ratings on 13 March and enter salary proposals between 16 and 27 March. "
            "Kate Osei reviews any proposal outside the merit range. Salary changes take effect on 1 April "
            "2026. Calibration notes are kept for 3 years and are never shared with employees."),
        subject="How the People team runs calibration for the 2025 review cycle",
    ),
    doc(
        "hr/investigation-summary-hr-2025-014.pdf",
        "Confidential Investigation Summary HR-2025-014",
        "Carol Diaz",
        d(2025, 11, 20),
        (P, "STRICTLY CONFIDENTIAL. People team only. This summary uses codes instead of names; the key to "
            "the codes is held separately by the VP People. Retention: 7 years from closure."),
        (H2, "Case details"),
        (UL, [
            "Case number: HR-2025-014",
            "Received: 8 October 2025, through the Speak Up line (the reporter gave their name)",
            "Team: Customer Support, Austin",
            "Investigator: Carol Diaz, HR Business Partner; report reviewed by external employment counsel",
            "Decision maker: Kate Osei, VP People",
            "Closed: 20 November 2025",
        ]),
        (H2, "Allegations"),
        (OL, [
            "Manager B repeatedly made demeaning remarks about team members' accents during team meetings between June and September 2025.",
            "After Employee A raised the remarks with Manager B directly in August 2025, Manager B gave Employee A fewer preferred day shifts as a form of retaliation.",
        ]),
        (H2, "Investigation"),
        (P, "The investigator interviewed Employee A, Manager B and 7 other members of the team between 14 "
            "and 31 October 2025, reviewed Slack messages from the team channel, meeting recordings available "
            "for 4 of the relevant meetings, and the shift rota data for June to October 2025. Manager B was "
            "told of the allegations in writing on 13 October and was accompanied by a colleague of their "
            "choice at interview."),
        (H2, "Findings"),
        (P, "Allegation 1 is substantiated. Four witnesses independently described at least three incidents, "
            "and one was captured in a meeting recording from 11 September 2025. The remarks breach section 1 "
            "of the Code of Conduct (respect at work)."),
        (P, "Allegation 2 is not substantiated. The rota data shows that shifts were allocated by the "
            "scheduling tool according to the published rotation, and Employee A's share of day shifts (58%) "
            "was in line with the team average (55%). The investigator found no evidence that Manager B "
            "overrode the tool."),
        (H2, "Outcome"),
        (UL, [
            "Manager B received a final written warning on 12 November 2025.",
            "Manager B will complete 6 sessions of leadership coaching by 31 January 2026 and is removed from hiring panels for 6 months.",
            "The Austin Support team attended respect-at-work training on 9 December 2025.",
            "Employee A was offered a move to another team with no change in pay; they chose to stay.",
            "The People team will check in with Employee A at 30, 60 and 90 days; the 30-day check-in on 19 December found no further concerns.",
        ]),
        (H2, "Lessons"),
        (P, "Three team members said they had noticed the remarks but did not know how to report them. The "
            "People team will add a short Speak Up reminder to every team's quarterly meeting agenda, and the "
            "manager training in Q1 2026 will include how to respond when someone raises a concern."),
        subject="Summary of an internal investigation (fictional demo data)",
        footer="Acme - Strictly confidential (People team)",
    ),
    # ---------------------------------------------------------------------- exec
    doc(
        "exec/project-falcon-acquisition-plan.pdf",
        "Project Falcon: Acquisition Plan for Brightwave Analytics",
        "Dan Okafor",
        d(2026, 1, 30),
        (P, "Strictly confidential. Executive team and Board only. Prepared by Dan Okafor (CFO) with Raj "
            "Patel (CTO), Kate Osei (VP People) and Sofia Marchetti (General Counsel). Version 2, 30 January "
            "2026. Project Falcon is the code name; do not use the target's name in email subjects, calendar "
            "invitations or Slack."),
        (H2, "1. The target"),
        (P, "Brightwave Analytics, Inc. is a private company in Denver, Colorado, founded in 2019 by Lena "
            "Marsh (CEO) and Marcus Feld (CTO). Brightwave sells real-time merchandising analytics and "
            "demand forecasting to online retailers. It has 34 employees, 22 of them engineers or data "
            "scientists, and about 140 customers, 38 of whom are also Acme customers."),
        (TABLE, [
            ["Metric (31 Dec 2025)", "Value"],
            ["ARR", "$6.2M"],
            ["ARR growth (year on year)", "48%"],
            ["Gross margin", "81%"],
            ["Share of ARR on monthly contracts", "30%"],
            ["Net revenue retention", "118%"],
            ["Cash burn (FY2025)", "$3.4M"],
        ]),
        (H2, "2. Why we want it"),
        (UL, [
            "Acme Insights is our weakest product: Brightwave's forecasting would make it a reason to buy Acme rather than an add-on.",
            "Cross-sell: we estimate $9M of additional ARR within three years by offering Brightwave to our 214 Enterprise customers.",
            "Talent: 12 experienced data engineers and scientists, a team we could not hire in 2025 (we lost two senior data engineers to a competitor in January 2026).",
            "Defensive: two of our competitors have approached Brightwave in the last 6 months.",
        ]),
        (H2, "3. Price and structure"),
        (P, "The Board authorised a non-binding letter of intent at an enterprise value of up to $48M on "
            "9 December 2025, about 7.7 times current ARR. Our opening offer is $42M. The proposed structure "
            "at $48M is:"),
        (UL, [
            "$30M in cash at closing, funded from Acme's cash balance ($86.4M at 31 December 2025).",
            "$18M in Acme shares, vesting over 3 years for the founders.",
            "10% of the cash consideration held in escrow for 18 months against warranty claims.",
            "A separate retention pool of $4M in cash and options for Brightwave employees, paid over 3 years.",
        ]),
        (H2, "4. Timeline"),
        (TABLE, [
            ["Milestone", "Target date"],
            ["Letter of intent signed", "6 February 2026"],
            ["Exclusivity ends", "31 March 2026"],
            ["Due diligence complete", "30 April 2026"],
            ["Definitive agreement signed", "29 May 2026"],
            ["Closing", "30 June 2026"],
        ]),
        (BREAK, ""),
        (H2, "5. Due diligence plan"),
        (P, "Diligence and advisers are budgeted at up to $1.2M. Sterling Hale Partners acts as our financial "
            "adviser and Carver & Lowe LLP as legal counsel. Workstreams:"),
        (UL, [
            "Financial (Dan Okafor, Ivy Nguyen): revenue quality, especially the 30% of ARR on monthly contracts; churn by cohort; deferred revenue.",
            "Technical (Raj Patel, Hector Ruiz): architecture, security, code ownership and open-source licences; cost of moving Brightwave from Google Cloud to AWS us-west-2.",
            "People (Kate Osei): compensation benchmarking against our 2026 bands, key-person risk, retention plans for the 22 engineers.",
            "Legal (Sofia Marchetti): the pending patent claim by DataMesa Inc. over a forecasting method, customer contracts with change-of-control clauses, data protection.",
        ]),
        (H2, "6. Risks"),
        (UL, [
            "Patent claim: DataMesa's claim could cost up to $2M to settle; we will seek a specific indemnity and a larger escrow if it is not resolved before signing.",
            "Retention: Brightwave's team may not relocate from Denver. We will keep Denver as a remote hub for at least two years.",
            "Revenue quality: monthly contracts could churn after the announcement. We plan to offer annual contracts with a 10% discount to Brightwave's top 40 customers.",
            "Integration: the migration to AWS is estimated at 9 months and $650,000; Brightwave's product stays on Google Cloud until then.",
        ]),
        (H2, "7. Walk-away conditions"),
        (P, "We walk away if the price rises above $48M, if fewer than 70% of Brightwave's engineers commit to "
            "stay for at least 12 months, or if diligence finds that more than 20% of ARR is at risk. Dan "
            "Okafor will send a walk-away memo to the Board by 13 February 2026."),
        (H2, "8. Integration (first 100 days)"),
        (P, "On day one Brightwave becomes part of the Insights product group reporting to Raj Patel; Lena "
            "Marsh becomes VP Insights. Customers keep their contracts and support contacts. By day 100 we "
            "launch a combined Insights offer for Enterprise customers. The Brightwave brand will be retired "
            "by the first quarter of 2027. No revenue from Falcon is included in the FY2026 budget."),
        subject="Acquisition plan, code name Project Falcon",
        footer="Acme - Strictly confidential (Exec and Board)",
    ),
    doc(
        "exec/restructuring-memo.docx",
        "Memo: Layoff-Free Restructuring into Customer Experience",
        "Erin Walsh",
        d(2026, 1, 28),
        (P, "From: Erin Walsh, CEO. To: Dan Okafor, Raj Patel; copy Kate Osei and Jamal Brooks. "
            "Date: 28 January 2026. Confidential until the all-hands announcement on 12 February 2026."),
        (H2, "Decision"),
        (P, "From 2 March 2026, Customer Support (52 people) and Customer Success (19 people) become one "
            "organisation, Customer Experience (CX), of 71 people. CX reports to Jamal Brooks. Rosa Mendez, "
            "today our Support Director in Austin, becomes Head of Customer Experience. This restructuring "
            "is layoff-free: nobody loses their job, and nobody's pay is reduced."),
        (H2, "Why"),
        (P, "Customers today deal with two teams that do not share goals or tools. Enterprise customers have "
            "a customer success manager and a separate support queue, and nobody owns the whole relationship. "
            "Customer satisfaction (CSAT) fell from 93% to 88% during 2025, and first response time for "
            "Enterprise tickets is over 4 hours. The November outage showed how slowly we coordinate when "
            "several large customers need help at once."),
        (H2, "New structure"),
        (TABLE, [
            ["Pod", "Customers", "People", "Location"],
            ["Enterprise West", "Enterprise, Americas West", "18", "Portland and Austin"],
            ["Enterprise East and EU", "Enterprise, Americas East and Europe", "17", "Austin and Dublin"],
            ["Growth", "Growth plan", "21", "Austin and Dublin"],
            ["Starter and Self-Serve", "Starter plan, community, help centre", "15", "Austin and remote"],
        ]),
        (H2, "What changes for people"),
        (UL, [
            "14 people change role, for example from Support engineer to technical account manager. All were offered their new role in one-to-one meetings.",
            "Anyone whose new role has a lower salary band keeps their current salary, and their pay is protected for at least 12 months.",
            "On-call and weekend rotation pay in Austin does not change.",
            "In Dublin, we started consultation with the employee representatives on 2 February 2026, as Irish law requires.",
        ]),
        (H2, "Cost"),
        (P, "The change is cost neutral within the FY2026 budget: the 6 Support hires already planned are "
            "kept, and one vacant Success director role is not filled (saving about $210,000 a year), which "
            "pays for new tooling that merges the two ticket and account systems."),
        (H2, "Communication plan"),
        (TABLE, [
            ["Date", "Audience", "Owner"],
            ["5 February 2026", "All Support and Success managers", "Kate Osei and Rosa Mendez"],
            ["10 February 2026", "Support and Success team meetings", "Rosa Mendez"],
            ["12 February 2026", "All-hands announcement", "Erin Walsh"],
            ["2 March 2026", "New structure live; customers told by their contacts", "Jamal Brooks"],
        ]),
        (H2, "How we will measure it"),
        (P, "CSAT of 92% or higher by Q3 2026, first response time under 2 hours for Enterprise customers, and "
            "voluntary attrition in CX below 15% (Customer Support attrition was 17.5% over the last 12 "
            "months). Kate Osei will report monthly to the executive team and to the Board in June."),
        subject="Combining Customer Support and Customer Success without layoffs",
    ),
    # --------------------------------------------------------------------- sales
    doc(
        "sales/case-study-initech.pdf",
        "Customer Case Study: Initech Home & Garden",
        "Acme Marketing",
        d(2025, 12, 15),
        (P, "Approved for external use by Initech Home & Garden on 11 December 2025. Reference contact: Priya "
            "Raman, Chief Digital Officer."),
        (H2, "The customer"),
        (P, "Initech Home & Garden sells furniture, tools, plants and outdoor living products through 120 stores "
            "in the Midwest and online. Headquartered in Columbus, Ohio, it processes about 2.4 million online "
            "orders a year, 35% of them collected in store."),
        (H2, "The challenge"),
        (P, "Initech had run its online shop on OmniShop Suite since 2019. By 2024 the all-in-one platform had "
            "become a bottleneck: the checkout could not be changed without changing the storefront, "
            "buy-online-pick-up-in-store (BOPIS) orders were sent to stores by a nightly batch, and platform "
            "fees rose 18% at the 2024 renewal. Around 26% of shoppers who reached the payment step abandoned "
            "their basket."),
        (H2, "The solution"),
        (P, "Initech kept its headless storefront and replaced OmniShop's checkout and order management with Acme "
            "on the Enterprise plan in April 2025. Acme Professional Services migrated 5 years of order history "
            "in three weekends. Key elements:"),
        (UL, [
            "Acme Checkout with saved wallets, Apple Pay and a financing option for orders over $500.",
            "Acme Orders sending BOPIS orders to the right store in real time, with live stock from each store.",
            "Order status webhooks to Initech's SMS provider, so shoppers know when their order is ready.",
        ]),
        (H2, "The results"),
        (TABLE, [
            ["Measure", "Result"],
            ["Abandonment at the payment step", "down from 26% to 21% (19% fewer abandoned checkouts)"],
            ["Time from order to ready-for-pickup", "from next day to 2 hours on average"],
            ["Peak load handled (Black Friday 2025)", "310 orders per minute, no incidents"],
            ["Platform and engineering cost", "$610,000 per year lower than OmniShop Suite"],
        ]),
        (P, "\"We wanted to own our storefront and stop fighting our checkout. Acme let us do both, and our store "
            "teams finally see online orders the moment they are placed.\" - Priya Raman, Chief Digital Officer, "
            "Initech Home & Garden"),
        (H2, "Using this case study"),
        (P, "Best for omnichannel retailers with many stores, and for prospects leaving an all-in-one platform. "
            "Initech takes one reference call per month, booked through marketing@acme.example."),
        subject="Customer case study",
        footer="Acme - Approved for external use",
    ),
]

# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #

FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
PRODUCER = "Acme demo tenant generator (fpdf2)"


def _latin1(text: str) -> str:
    """Core PDF fonts only cover latin-1: fail loudly instead of printing '?'."""
    text.encode("latin-1")
    return text


def render_pdf(item: Doc) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    class PDF(FPDF):
        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "I", 8)
            label = f"{item.footer}    " if item.footer else ""
            self.cell(0, 10, _latin1(f"{label}Page {self.page_no()} of {{nb}}"), align="C")

        def file_id(self):  # stable /ID derived from the content, not the clock
            digest = hashlib.md5(item.path.encode() + item.title.encode()).hexdigest().upper()
            return f"<{digest}><{digest}>"

    pdf = PDF(format="A4")
    pdf.set_creation_date(item.date)
    pdf.set_title(item.title)
    pdf.set_author(item.author)
    pdf.set_subject(item.subject or item.title)
    pdf.set_creator("bench/tools/make_acme_tenant.py")
    pdf.set_producer(PRODUCER)
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()

    def para(text: str, size: float = 11, style: str = "", h: float = 6, after: float = 3) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, h, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(after)

    para(item.title, size=18, style="B", h=9, after=4)
    for kind, body in item.blocks:
        if kind == H2:
            pdf.ln(2)
            para(str(body), size=13, style="B", h=7, after=2)
        elif kind == P:
            para(str(body))
        elif kind in (UL, OL):
            pdf.set_font("Helvetica", "", 11)
            for n, line in enumerate(body, 1):  # type: ignore[arg-type]
                mark = f"{n}." if kind == OL else "-"
                pdf.set_x(pdf.l_margin + 4)
                pdf.cell(6, 6, mark)
                pdf.multi_cell(0, 6, _latin1(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(1)
            pdf.ln(2)
        elif kind == TABLE:
            rows = body  # type: ignore[assignment]
            pdf.set_font("Helvetica", "", 10)
            with pdf.table(line_height=6, text_align="LEFT", first_row_as_headings=True) as table:
                for row in rows:  # type: ignore[union-attr]
                    r = table.row()
                    for cell in row:
                        r.cell(_latin1(cell))
            pdf.ln(4)
        elif kind == BREAK:
            pdf.add_page()
        else:
            raise ValueError(f"unknown block {kind!r} in {item.path}")
    return bytes(pdf.output())


def render_docx(item: Doc) -> bytes:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = item.title
    props.author = item.author
    props.subject = item.subject or item.title
    props.last_modified_by = item.author
    props.created = item.date.replace(tzinfo=None)
    props.modified = item.date.replace(tzinfo=None)
    props.last_printed = item.date.replace(tzinfo=None)
    props.revision = 1
    props.comments = "Acme sample tenant (fictional demo data)"
    props.keywords = ""
    props.category = ""

    document.add_heading(item.title, level=1)
    for kind, body in item.blocks:
        if kind == H2:
            document.add_heading(str(body), level=2)
        elif kind == P:
            document.add_paragraph(str(body))
        elif kind in (UL, OL):
            style = "List Number" if kind == OL else "List Bullet"
            for line in body:  # type: ignore[union-attr]
                document.add_paragraph(line, style=style)
        elif kind == TABLE:
            rows = body  # type: ignore[assignment]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))  # type: ignore[arg-type]
            table.style = "Table Grid"
            for i, row in enumerate(rows):  # type: ignore[union-attr]
                for j, text in enumerate(row):
                    cell = table.cell(i, j)
                    cell.text = text
                    if i == 0:
                        for run in cell.paragraphs[0].runs:
                            run.bold = True
            document.add_paragraph("")
        elif kind == BREAK:
            document.add_page_break()
        else:
            raise ValueError(f"unknown block {kind!r} in {item.path}")

    raw = io.BytesIO()
    document.save(raw)
    return _normalize_zip(raw.getvalue())


def _normalize_zip(data: bytes) -> bytes:
    """Re-zip with fixed timestamps and attributes so equal content gives equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            fixed.create_system = 3
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def render(item: Doc) -> bytes:
    if item.path.endswith(".pdf"):
        return render_pdf(item)
    if item.path.endswith(".docx"):
        return render_docx(item)
    raise ValueError(f"no renderer for {item.path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="tenant folder (default: apps/demo/acme)")
    args = parser.parse_args(argv)

    paths = [item.path for item in DOCS]
    if len(set(paths)) != len(paths):
        raise SystemExit("duplicate document path in DOCS")

    stale = []
    for item in DOCS:
        target = args.root / item.path
        data = render(item)
        current = target.read_bytes() if target.exists() else None
        if current == data:
            continue
        stale.append(item.path)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    verb = "differ" if args.check else "written"
    print(f"{len(DOCS)} documents, {len(stale)} {verb}" + (": " + ", ".join(stale) if stale else ""))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
