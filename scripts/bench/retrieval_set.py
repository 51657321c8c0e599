"""Writes ``retrieval_set.json``: the evaluation set of hybrid search (our own writing).

    python scripts/bench/retrieval_set.py        # rewrites scripts/bench/retrieval_set.json

An agent's memory of one user (Dana, an engineer) over some months: facts about colleagues,
preferences, tasks with dates and reference numbers, infrastructure notes, and turns of
several conversations saved one per memory. Families of near-identical records (invoices,
tickets, flights, hosts) differ only in a name, a number or a rare word, as real memories
do; questions come in three kinds: ``paraphrase`` (other words for the same thing),
``exact`` (a name, number, code or date the answer holds verbatim) and ``rare`` (an
unusual word). Each question lists the keys of the memories that answer it.

Nothing here is taken from a public benchmark; the ``random`` seed is fixed, so the file is
reproducible.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("retrieval_set.json")

memories: list[dict[str, Any]] = []
questions: list[dict[str, Any]] = []


def mem(content: str, category: str = "fact") -> str:
    key = f"m{len(memories) + 1:03d}"
    memories.append({"key": key, "category": category, "content": content})
    return key


def ask(question: str, kind: str, *keys: str) -> None:
    questions.append({"question": question, "kind": kind, "expected": list(keys)})


rng = random.Random(16)

# -- colleagues: one fact each, asked by name and by role --------------------------------------
PEOPLE = [
    ("Priya Raghunathan", "leads the payments team", "Who runs payments?",
     "payments", "leader of the team that handles money transfers"),
    ("Tomasz Wierzbicki", "owns the Kubernetes cluster upgrades",
     "who is responsible for upgrading our container orchestration?", "k8s", ""),
    ("Aiko Matsumura", "is the designer behind the onboarding screens",
     "who designed the first-run experience for new users?", "design", ""),
    ("Oluwaseun Adeyemi", "manages the data warehouse and the nightly ETL jobs",
     "who looks after the analytics database and its overnight loads?", "data", ""),
    ("Benedikt Schrader", "is Dana's manager since the reorg in April",
     "who does Dana report to now?", "manager", ""),
    ("Lucia Ferreira", "handles vendor contracts in procurement",
     "who should I talk to about signing a supplier agreement?", "procurement", ""),
    ("Rahul Venkataraman", "is the on-call lead for the search service",
     "who is the escalation point when search is down?", "oncall", ""),
    ("Marguerite Duval", "translates the product into French and Spanish",
     "who does our localization?", "l10n", ""),
    ("Kwame Mensah", "runs the security review for every new external API",
     "who must approve a public endpoint before launch?", "security", ""),
    ("Ingrid Solberg", "is the product manager for the mobile app",
     "who decides the roadmap for the phone application?", "pm", ""),
    ("Dmitri Volkov", "wrote most of the legacy billing code in Perl",
     "who knows the old invoicing scripts best?", "billing", ""),
    ("Fatima Zahra Benali", "coordinates the quarterly hackathon",
     "who organizes the internal coding competition every three months?", "hackathon", ""),
    ("Henrik Lindqvist", "is the database administrator for the Postgres fleet",
     "who administers our relational databases?", "dba", ""),
    ("Chiara Bianchi", "leads customer support for enterprise accounts",
     "who is in charge of helping big corporate clients?", "support", ""),
    ("Yusuf Demir", "maintains the CI pipelines and the build farm",
     "who keeps the continuous integration machines running?", "ci", ""),
    ("Sofia Papadopoulou", "is the new intern on the frontend team this summer",
     "who joined the web UI group as a trainee?", "intern", ""),
]
person_keys = {}
for name, role, paraphrase, short, _ in PEOPLE:
    person_keys[short] = mem(f"{name} {role}.")
    ask(paraphrase, "paraphrase", person_keys[short])
for name, _role, _p, short, _ in PEOPLE[::2]:
    last = name.split()[-1]
    ask(f"What does {last} do?", "exact", person_keys[short])
# contact details: a family that differs by name and number only
for name, _role, _p, short, _ in PEOPLE:
    ext = rng.randint(2000, 7999)
    key = mem(f"{name.split()[0]}'s desk phone extension is {ext}.")
    if short in ("payments", "dba", "security", "intern", "billing", "ci"):
        ask(f"phone extension for {name.split()[0]}", "exact", key)
    if short == "oncall":
        ask(f"which person has extension {ext}?", "exact", key)

# -- preferences ----------------------------------------------------------------------------
PREFS = [
    ("The user takes oat milk in coffee, never dairy.",
     "what should I put in Dana's coffee?", "paraphrase"),
    ("The user prefers answers in short bullet points rather than long paragraphs.",
     "how does Dana like responses formatted?", "paraphrase"),
    ("The user wants code examples in Rust when possible, otherwise Python.",
     "which programming language should sample code use?", "paraphrase"),
    ("The user is vegetarian and avoids restaurants without meat-free options.",
     "dietary restrictions for a team dinner booking", "paraphrase"),
    ("The user likes the editor theme Solarized Dark.",
     "what colour scheme does Dana use in the IDE?", "paraphrase"),
    ("The user prefers window seats on flights.", "airplane seat preference", "paraphrase"),
    ("The user dislikes meetings before 10am.",
     "when is too early to schedule a call with Dana?", "paraphrase"),
    ("The user's preferred time zone for scheduling is Europe/Lisbon.",
     "which timezone should invites use?", "paraphrase"),
    ("The user prefers tabs over spaces, with a width of four.",
     "indentation style Dana wants", "paraphrase"),
    ("The user wants weekly summaries sent on Friday afternoons.",
     "when should the recap of the week go out?", "paraphrase"),
    ("The user listens to lo-fi playlists while coding.",
     "what music helps Dana focus?", "paraphrase"),
    ("The user prefers trains to planes for trips under 600 km.",
     "how does Dana like to travel short distances?", "paraphrase"),
    ("The user would rather use Signal than WhatsApp for personal chats.",
     "which messaging app for private conversations?", "paraphrase"),
    ("The user likes their terminal prompt minimal: only the git branch and exit code.",
     "shell prompt configuration preference", "paraphrase"),
    ("The user drinks sencha green tea in the afternoon.",
     "afternoon beverage", "paraphrase"),
    ("The user prefers dark chocolate with at least 70 percent cocoa.",
     "what sweets can I buy as a thank-you gift?", "paraphrase"),
    ("The user reads on a Kobo e-reader and prefers EPUB files.",
     "what ebook format should I send?", "paraphrase"),
    ("The user wants pull requests under 400 lines whenever possible.",
     "maximum size of a code review Dana is comfortable with", "paraphrase"),
    ("The user is allergic to penicillin.", "medication allergies", "paraphrase"),
    ("The user prefers the standing desk by the window in the Lisbon office.",
     "where does Dana like to sit at work?", "paraphrase"),
]
for content, question, kind in PREFS:
    ask(question, kind, mem(content, "preference"))
# near-duplicates that must not be confused
mem("The user's partner takes regular cow's milk in coffee.", "preference")
mem("The user's brother is allergic to peanuts.", "fact")
mem("The user liked the editor theme Monokai years ago but switched away.", "preference")

# -- tasks with dates and references ----------------------------------------------------------
TASKS = [
    ("Renew the car insurance, policy KX-7731, before 14 March.", "KX-7731 policy",
     "when does the vehicle coverage need renewing?"),
    ("Book the dentist appointment for the week of 22 April.", "dentist",
     "schedule a tooth check-up"),
    ("Submit the expense report for the Berlin conference by 5 May.", "Berlin expenses",
     "deadline to claim travel costs for the German event"),
    ("Rotate the TLS certificate on gateway-03 before it expires on 30 June.",
     "gateway-03 certificate", "when does the HTTPS cert on the gateway expire?"),
    ("Send the signed NDA to Halvorsen Maritime by Thursday.", "Halvorsen",
     "which shipping company is waiting on a confidentiality agreement?"),
    ("Prepare slides for the architecture review on 9 October.", "architecture review",
     "presentation due for the design board meeting"),
    ("Pay the electricity bill of 142.37 euros before the 20th.", "142.37",
     "how much is owed to the power company?"),
    ("Order a replacement charger for the ThinkPad X1 Carbon.", "ThinkPad charger",
     "laptop power adapter needs to be bought"),
    ("Migrate the cron jobs from the old VM batch-legacy-2 to Kubernetes CronJobs.",
     "batch-legacy-2", "move scheduled scripts off the old virtual machine"),
    ("File the quarterly VAT return before 31 July.", "VAT return",
     "tax filing deadline this summer"),
    ("Call the landlord about the leaking radiator in the spare room.", "radiator",
     "heating problem at home"),
    ("Review Sofia's pull request #4412 on the date-picker component.", "#4412",
     "code review for the intern's calendar widget change"),
    ("Pick up the repaired bicycle from Velo Atelier on Saturday.", "Velo Atelier",
     "where is the bike being fixed?"),
    ("Update the runbook for the Kafka consumer lag alert.", "Kafka lag runbook",
     "documentation for the message queue backlog alarm"),
    ("Cancel the free trial of Grammatik Pro before it converts on 3 September.",
     "Grammatik Pro", "which subscription should be stopped before it starts charging?"),
    ("Buy a birthday present for Benedikt; his birthday is 11 November.",
     "Benedikt birthday", "when is the manager's birthday?"),
    ("Archive the Slack channel #proj-lighthouse after the launch retrospective.",
     "#proj-lighthouse", "which chat room can be closed after the project post-mortem?"),
    ("Schedule the annual eye exam; the last one was on 2 February.", "eye exam",
     "when did Dana last have vision tested?"),
]
for content, exact, paraphrase in TASKS:
    key = mem(content, "task")
    ask(exact, "exact", key)
    ask(paraphrase, "paraphrase", key)

# -- reference numbers: families that differ by one token ------------------------------------
VENDORS = ["Acme Cloud", "Northwind Hosting", "Bluefin Analytics", "Corvid Security",
           "Tandem Print", "Larkspur Legal", "Quarry Logistics", "Meridian Travel",
           "Pebble Telecom", "Orchard Catering", "Vantage Office Supplies", "Kestrel Courier"]
invoice_keys = []
for vendor in VENDORS:
    number = rng.randint(10000, 99999)
    amount = rng.randint(120, 9800) + rng.choice([0, 0.5, 0.99, 0.25])
    status = rng.choice(["was paid on time", "is still unpaid", "was disputed",
                         "was paid after a reminder"])
    key = mem(f"Invoice {number} from {vendor} for {amount:.2f} euros {status}.")
    invoice_keys.append((key, number, vendor, status))
for key, number, _vendor, _status in invoice_keys[:8]:
    ask(f"status of invoice {number}", "exact", key)
for key, _number, vendor, _status in invoice_keys[8:]:
    ask(f"what did we owe {vendor}?", "exact", key)

TICKETS = [
    ("login times out after 30 seconds on Safari", "sign-in hangs on Apple's browser"),
    ("CSV export drops the last row", "spreadsheet download is missing a line"),
    ("push notifications arrive twice on Android", "duplicate alerts on phones"),
    ("dark mode makes the chart labels unreadable", "graph text invisible in night theme"),
    ("password reset email lands in spam", "recovery mail goes to junk folder"),
    ("search returns stale results after an edit", "outdated hits after updating a document"),
    ("PDF invoices render with the wrong currency symbol", "bills show the wrong money sign"),
    ("memory leak in the websocket gateway", "realtime connection server grows in RAM"),
    ("timezone off by one hour after daylight saving", "clock shift bug in spring"),
    ("file upload fails above 2 GB", "large attachments cannot be sent"),
    ("two-factor codes rejected when the phone clock drifts", "OTP fails with skewed time"),
    ("autocomplete suggests deleted tags", "removed labels still proposed while typing"),
]
for i, (bug, paraphrase) in enumerate(TICKETS):
    ticket = f"PLAT-{rng.randint(1000, 9999)}"
    key = mem(f"Ticket {ticket} tracks the bug: {bug}.", "task")
    if i % 2 == 0:
        ask(ticket, "exact", key)
    else:
        ask(paraphrase, "paraphrase", key)

HOSTS = ["db-primary-eu1", "db-replica-eu2", "cache-redis-07", "search-es-04", "gateway-03",
         "worker-batch-11", "ml-gpu-02", "vault-01", "kafka-broker-5", "grafana-mon-1"]
for i, host in enumerate(HOSTS):
    ip = f"10.{rng.randint(0, 40)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
    key = mem(f"The host {host} has the internal address {ip} and runs Debian 12.")
    if i % 3 == 0:
        ask(f"IP of {host}", "exact", key)
    elif i % 3 == 1:
        ask(f"which machine is {ip}?", "exact", key)

FLIGHTS = [("Lisbon", "Berlin", "TP 534", "4 May"), ("Berlin", "Lisbon", "LH 1172", "8 May"),
           ("Lisbon", "New York", "TP 209", "12 September"),
           ("New York", "Lisbon", "TP 210", "19 September"),
           ("Lisbon", "Oslo", "SK 4732", "2 December"), ("Oslo", "Lisbon", "SK 4733", "6 December")]
for origin, dest, flight, date in FLIGHTS:
    key = mem(f"Flight {flight} from {origin} to {dest} departs on {date}; seat is by the "
              f"window.", "fact")
    ask(f"flight {flight}", "exact", key)
ask("when does Dana fly to Norway?", "paraphrase", memories[-2]["key"])

# -- rare words and project codenames ---------------------------------------------------------
RARE = [
    ("Project Lighthouse is the codename for the new self-service analytics portal.",
     "Lighthouse", "what is the internal name of the analytics self-service tool?"),
    ("Project Quokka is the codename for the offline mode of the mobile app.", "Quokka",
     "codename of the phone app's no-network feature"),
    ("The staging cluster is nicknamed Marzipan because it is always half-baked.",
     "Marzipan", "what do people call the pre-production environment?"),
    ("Dana keeps a sourdough starter named Brunhilde in the office fridge.", "Brunhilde",
     "what is the name of the bread culture at work?"),
    ("The team mascot is an axolotl plush called Pickles.", "axolotl",
     "what stuffed animal does the team have?"),
    ("Dana's cat is a Maine Coon named Biscuit.", "Biscuit",
     "what kind of pet does Dana have?"),
    ("The retrospective format the team likes is the sailboat exercise.", "sailboat",
     "which retro technique is popular with the team?"),
    ("The WiFi in the Lisbon office is called Tagus-Guest and the password rotates monthly.",
     "Tagus-Guest", "name of the visitor wireless network"),
    ("The feature flag checkout_v2_rollout controls the new payment page.",
     "checkout_v2_rollout", "which toggle enables the redesigned checkout?"),
    ("The nightly job reconcile_ledger.py compares bank statements with the ledger.",
     "reconcile_ledger.py", "what script matches bank records against bookkeeping?"),
    ("Dana's favourite board game is Wingspan.", "Wingspan",
     "what tabletop game does Dana enjoy?"),
    ("The office plant nobody waters is a fiddle-leaf fig.", "fiddle-leaf",
     "which houseplant in the office is neglected?"),
    ("Dana practices the shakuhachi flute on Sunday mornings.", "shakuhachi",
     "what instrument does Dana play?"),
    ("The legacy monolith is called Gondwana and is written in Perl and Java.", "Gondwana",
     "name of the old single big application"),
    ("Dana's grandmother's recipe for pastéis de nata uses lemon zest.", "pastéis",
     "family custard tart recipe"),
    ("The load-testing tool the team settled on is k6, not Locust.", "k6",
     "which performance testing tool was chosen?"),
]
for content, word, paraphrase in RARE:
    key = mem(content)
    ask(word, "rare", key)
    ask(paraphrase, "paraphrase", key)

# -- infrastructure notes (many similar) -------------------------------------------------------
SERVICES = ["billing", "search", "auth", "notifications", "reporting", "checkout", "profile",
            "media", "audit", "scheduler"]
for svc in SERVICES:
    port = rng.randint(8000, 9999)
    replicas = rng.randint(2, 12)
    owner = rng.choice(PEOPLE)[0].split()[0]
    key = mem(f"The {svc} service listens on port {port}, runs {replicas} replicas and is "
              f"owned by {owner}.")
    if svc in ("auth", "audit", "media"):
        ask(f"port of the {svc} service", "exact", key)
    if svc == "scheduler":
        ask(f"which service uses port {port}?", "exact", key)
mem("Deploys to production happen on Tuesdays and Thursdays after 14:00 Lisbon time.")
ask("on which days can we ship to prod?", "paraphrase", memories[-1]["key"])
mem("Postgres backups are taken every six hours and kept for 35 days.")
ask("how long do we retain database snapshots?", "paraphrase", memories[-1]["key"])
mem("Error budgets are 99.9 percent monthly availability for customer-facing APIs.")
ask("what uptime target do public APIs have?", "paraphrase", memories[-1]["key"])
mem("Secrets live in Vault under the path kv/platform/<service>; never in env files.")
ask("where should API keys and passwords be stored?", "paraphrase", memories[-1]["key"])

# -- conversation turns (saved one per memory, category "conversation") ----------------------
CONVERSATIONS = [
    # (topic, [turns], [(question, kind, turn indexes)])
    ("trip", [
        "User: I need to plan the offsite in Porto for the second week of June.",
        "Assistant: How many people are coming to the Porto offsite?",
        "User: Fourteen, and two of them need step-free access.",
        "Assistant: The Casa do Rio hotel has lifts and twelve rooms free that week.",
        "User: Book Casa do Rio then, and find a second hotel nearby for the rest.",
        "Assistant: Hotel Ribeira Azul is a four minute walk away and has two rooms left.",
        "User: Great. Dinner on the first night should be at a place with fish.",
        "Assistant: I reserved a table for fourteen at Tasca do Peixe at 8pm on 10 June.",
    ], [("how many people attend the Porto offsite?", "exact", [2]),
        ("which hotel is accessible for the team trip?", "paraphrase", [3]),
        ("Ribeira Azul", "rare", [5]),
        ("where is the team dinner on the first evening?", "paraphrase", [7]),
        ("accessibility needs of attendees", "paraphrase", [2])]),
    ("debug", [
        "User: The nightly ETL failed again with a unique constraint violation.",
        "Assistant: Which table? The orders_fact table had duplicates last month.",
        "User: Yes, orders_fact, on the column order_line_id.",
        "Assistant: The upstream export sends the same line twice when a refund is issued.",
        "User: So we should deduplicate on order_line_id before loading?",
        "Assistant: Yes, keep the row with the latest updated_at and log the dropped ones.",
        "User: Oluwaseun agreed; he will add the dedup step on Monday.",
    ], [("why did the overnight data load crash?", "paraphrase", [0, 3]),
        ("order_line_id", "exact", [2, 4]),
        ("which row wins when duplicates are removed?", "paraphrase", [5]),
        ("who is implementing the deduplication?", "paraphrase", [6])]),
    ("hiring", [
        "User: We are hiring a senior backend engineer for the payments team.",
        "Assistant: Should the job post mention Go or Java as the main language?",
        "User: Go. And the salary band is 75 to 90 thousand euros.",
        "Assistant: I drafted the posting with remote-first within CET plus or minus two hours.",
        "User: Add that we sponsor visas, and remove the requirement for a degree.",
        "Assistant: Done. The final posting is saved as JOB-2231 in the HR system.",
    ], [("salary range for the backend role", "paraphrase", [2]),
        ("JOB-2231", "exact", [5]),
        ("do we help with work permits for new hires?", "paraphrase", [4]),
        ("which language will the new payments engineer use?", "paraphrase", [1, 2])]),
    ("health", [
        "User: Remind me that the physiotherapist said to do the shoulder exercises daily.",
        "Assistant: Noted. How many repetitions did the physio recommend?",
        "User: Three sets of twelve with the red resistance band.",
        "Assistant: I will remind you every evening at 19:30.",
        "User: Also the follow-up appointment is on 17 March with Dr. Okonkwo.",
    ], [("what rehab routine should Dana do?", "paraphrase", [0, 2]),
        ("Okonkwo", "rare", [4]),
        ("which colour is the exercise band?", "paraphrase", [2]),
        ("what time is the daily reminder?", "paraphrase", [3])]),
    ("home", [
        "User: The plumber quoted 480 euros to replace the boiler valve.",
        "Assistant: Do you want me to get a second quote?",
        "User: Yes, ask Canalizações Moreira, they did the kitchen last year.",
        "Assistant: Moreira quoted 395 euros and can come next Wednesday.",
        "User: Book Moreira for Wednesday morning.",
    ], [("how much did the first plumber want?", "paraphrase", [0]),
        ("Canalizações Moreira", "rare", [2, 3]),
        ("which tradesman is coming on Wednesday?", "paraphrase", [3, 4])]),
    ("learning", [
        "User: I want to learn Norwegian before the Oslo trip in December.",
        "Assistant: Would you prefer an app, a textbook or a tutor?",
        "User: A tutor twice a week, evenings only.",
        "Assistant: I found Kari Nordby, who teaches online on Tuesdays and Thursdays at 20:00.",
        "User: Perfect, and add Duolingo for daily practice.",
    ], [("which language is Dana studying?", "paraphrase", [0]),
        ("Nordby", "rare", [3]),
        ("when are the tutoring sessions?", "paraphrase", [3])]),
    ("incident", [
        "User: Search was down for 23 minutes last night. What happened?",
        "Assistant: The Elasticsearch cluster ran out of disk on search-es-04.",
        "User: Why did the disk alert not fire?",
        "Assistant: The alert threshold was 95 percent and the disk filled from 91 in minutes.",
        "User: Lower the threshold to 80 percent and page Rahul's rotation.",
        "Assistant: Changed; the postmortem is INC-0087 and is due Friday.",
    ], [("how long was the search outage?", "exact", [0]),
        ("root cause of the search downtime", "paraphrase", [1]),
        ("INC-0087", "exact", [5]),
        ("new disk alert threshold", "paraphrase", [4])]),
    ("budget", [
        "User: What is left in the team's training budget this year?",
        "Assistant: 3,200 euros of the 8,000 remain after the conference tickets.",
        "User: Reserve 1,500 for Sofia's React certification.",
        "Assistant: Reserved; 1,700 euros are still unallocated.",
    ], [("remaining learning and development money", "paraphrase", [1, 3]),
        ("React certification", "exact", [2])]),
]
for _topic, turns, asks in CONVERSATIONS:
    keys = [mem(turn, "conversation") for turn in turns]
    for question, kind, indexes in asks:
        ask(question, kind, *(keys[i] for i in indexes))

# -- filler: everyday memories without questions (distractors) -------------------------------
FILLER_SUBJECTS = ["The user", "Dana", "The team", "Benedikt", "Priya", "Tomasz", "Aiko",
                   "The support team", "The mobile squad", "Henrik"]
FILLER_PARTS = [
    "mentioned that the coffee machine on floor 3 is broken again",
    "asked to move the sprint review to Wednesday",
    "shared an article about Postgres vacuum tuning",
    "said the new monitors arrived",
    "is on holiday the last two weeks of August",
    "recommended the book Designing Data-Intensive Applications",
    "wants the standup to stay under fifteen minutes",
    "complained about flaky end-to-end tests",
    "proposed a lunch-and-learn about observability",
    "noticed the staging database is running out of space",
    "prefers async updates in the team channel",
    "will work from the Porto office next week",
    "reported that the VPN disconnects every hour",
    "finished the migration of the auth service to the new cluster",
    "asked for feedback on the onboarding checklist",
    "suggested using feature flags for the pricing experiment",
    "celebrated five years at the company",
    "is training for the Lisbon half marathon",
    "needs access to the billing dashboards",
    "found a typo in the public API documentation",
]
filler = [f"{s} {p}." for s in FILLER_SUBJECTS for p in FILLER_PARTS]
rng.shuffle(filler)
for text in filler[:150]:
    mem(text, rng.choice(["fact", "note", "fact", "note", "task"]))


def main() -> None:
    OUT.write_text(json.dumps({
        "about": "memoryd's own retrieval evaluation set (scripts/bench/retrieval_set.py)",
        "memories": memories, "questions": questions}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8")
    kinds: dict[str, int] = {}
    for q in questions:
        kinds[q["kind"]] = kinds.get(q["kind"], 0) + 1
    print(f"{len(memories)} memories, {len(questions)} questions {kinds} -> {OUT}")


if __name__ == "__main__":
    main()
