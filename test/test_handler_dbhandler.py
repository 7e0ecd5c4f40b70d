"""dbhandler against a real PostgreSQL: calls, replies, refusals, injection, load, restarts."""

import base64
import socket
import time

import pgcluster
from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

PG: pgcluster.PgCluster

FIXTURE_SQL = r"""
drop schema if exists cct cascade;
create schema cct;
create table cct.log (v text);
create function cct.add(a int, b int) returns int language sql as 'select a + b';
create function cct.greet(name text, greeting text default 'hello') returns text
    language sql as $$ select greeting || ', ' || name $$;
create function cct.series(n int) returns table (i int, sq int)
    language sql as 'select i, i * i from generate_series(1, n) i';
create function cct.record(v text) returns bigint language sql
    as $$ insert into cct.log values (v); select count(*) from cct.log $$;
create function cct.fail(code text) returns int language plpgsql
    as $$ begin raise 'failed on purpose' using errcode = code; end $$;
create function cct.sleep(s float8) returns int language plpgsql
    as $$ begin perform pg_sleep(s); return 1; end $$;
create function cct.answer(req text) returns json language sql
    as $$ select json_build_object('req', req, 'msg', 'Hello from DB') $$;
create function cct.noreq() returns json language sql as $$ select '{}'::json $$;
create function cct.types() returns table (n numeric, d date, ts timestamptz, b bytea,
        iv interval, f float8, j jsonb, arr int[], u uuid, t text, nothing int)
    language sql as $$ select 12345678901234567890.0123::numeric, '2024-02-29'::date,
        '2024-02-29 12:30:00+00'::timestamptz, '\x00ff'::bytea, '1 day 2 hours'::interval,
        'NaN'::float8, '{"k": [1, 2]}'::jsonb, array[1, 2],
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 'x'::text, null::int $$;
"""


def setUpModule():
    global PG
    PG = pgcluster.shared_cluster()
    try:
        conn = PG.connect()
        conn.cursor().execute(FIXTURE_SQL)
        conn.close()
    except BaseException:
        PG.destroy()
        raise


def tearDownModule():
    PG.destroy()


def sql_value(query, *args):
    conn = PG.connect()
    try:
        cur = conn.cursor()
        cur.execute(query, args)
        return cur.fetchone()[0]
    finally:
        conn.close()


class DBTestCase(CCTestCase):
    def start_db(self, allowed="cct.add, cct.greet, cct.series, cct.fail, cct.sleep, cct.answer, "
                 "cct.noreq, cct.types, cct.record", **options):  # fmt: skip
        lines = ["[h:db]", "handler = dbhandler", "db = %s" % PG.dsn(),
                 "allowed-functions = %s" % allowed]  # fmt: skip
        lines += ["%s = %s" % (k if k.startswith("zmq_") else k.replace("_", "-"), v)
                  for k, v in options.items()]  # fmt: skip
        server = self.start_server(
            "db", ccserver_section("db") + "\n[routes]\ndb = h:db\n\n" + "\n".join(lines) + "\n"
        )
        self.sock = self.dealer(server.endpoint)
        return server

    def call(self, function, params=None, ret="one", qid=b"Q1", msgtype="db", **fields):
        body = dict(fields, function=function)
        if params is not None:
            body["params"] = params
        if ret is not None:
            body["return"] = ret
        return self.query(self.sock, msgtype, body, qid=qid)

    def assert_error(self, reply, code):
        body = reply.get_body()
        self.assertEqual(reply.type, "error", body)
        self.assertEqual(body["code"], code, body)
        self.assertTrue(body["msg"])
        return body


class TestCalls(DBTestCase):
    def test_positional_named_and_string_params(self):
        self.start_db()
        reply = self.call("cct.add", [2, 3], ident="id-1")
        body = reply.get_body()
        self.assertEqual(reply.type, "reply.db")
        self.assertEqual(body["data"], [5])
        self.assertEqual(body["rowcount"], 1)
        self.assertEqual(body["statusmessage"], "SELECT 1")
        self.assertEqual(body["ident"], "id-1")
        self.assertEqual(self.call("cct.greet", {"name": "bob"}).get_body()["data"], ["hello, bob"])
        reply = self.call("cct.greet", {"greeting": "hi", "name": "ann"}, msgtype="db.confdb")
        self.assertEqual(reply.type, "reply.db.confdb")
        self.assertEqual(reply.get_body()["data"], ["hi, ann"])
        # params as a string holding JSON, as the original sent them
        self.assertEqual(self.call("cct.add", "[40, 2]").get_body()["data"], [42])
        self.assertEqual(self.call("cct.greet", '{"name": "x"}').get_body()["data"], ["hello, x"])

    def test_return_modes(self):
        server = self.start_db()
        body = self.call("cct.series", [3], ret="all", ident=7).get_body()
        self.assertEqual(body["data"], [[1, 1], [2, 4], [3, 9]])
        self.assertEqual(body["rowcount"], 3)
        self.assertEqual(body["ident"], 7)
        self.assertEqual(self.call("cct.series", [0], ret="all").get_body()["data"], [])
        self.assertIsNone(self.call("cct.series", [0], ret="one").get_body()["data"])
        # json: the function's result is the reply, on the request's route
        reply = self.call("cct.answer", ["reply.custom"], ret="json", qid=b"QJ")
        self.assertEqual(reply.type, "reply.custom")
        self.assertEqual(reply.get_body()["msg"], "Hello from DB")
        self.assert_error(self.call("cct.noreq", ret="json"), "bad-reply")
        # no return: the call runs, nothing is answered
        before = sql_value("select count(*) from cct.log")
        for ret in (None, "", "no"):
            self.sock.send_multipart(
                CCMessage.build(
                    "db", {"function": "cct.record", "params": ["quiet"], "return": ret}
                ).frames
            )
        wait_for(lambda: sql_value("select count(*) from cct.log") == before + 3)
        self.assert_silent(self.sock, 0.3)
        server.wait_stat("h:db.ok", 7)

    def test_type_conversions(self):
        self.start_db()
        data = self.call("cct.types").get_body()["data"]
        self.assertEqual(
            data,
            [
                "12345678901234567890.0123",
                "2024-02-29",
                data[2],
                base64.b64encode(b"\x00\xff").decode(),
                93600.0,
                "NaN",
                {"k": [1, 2]},
                [1, 2],
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "x",
                None,
            ],
        )
        self.assertRegex(data[2], r"^2024-02-29T\d\d:30:00[+-]\d\d:\d\d$")

    def test_allow_all(self):
        self.start_db(allowed="*")
        self.assertEqual(self.call("cct.add", [1, 1]).get_body()["data"], [2])
        self.assertEqual(self.call("pg_catalog.abs", [-3]).get_body()["data"], [3])

    def test_unqualified_name_means_public(self):
        PG.connect().cursor().execute(
            "create or replace function public.twice(x int) returns int language sql "
            "as 'select 2 * x'"
        )
        self.start_db(allowed="twice")
        self.assertEqual(self.call("public.twice", [4]).get_body()["data"], [8])
        self.assertEqual(self.call("twice", [5]).get_body()["data"], [10])


class TestRefusals(DBTestCase):
    def test_not_allowed_runs_nothing(self):
        server = self.start_db(allowed="cct.add")
        before = sql_value("select count(*) from cct.log")
        body = self.assert_error(self.call("cct.record", ["no"], ident="x"), "not-allowed")
        self.assertEqual(body["ident"], "x")
        self.assert_error(self.call("public.add", [1, 2]), "not-allowed")
        self.assertEqual(sql_value("select count(*) from cct.log"), before)
        server.wait_stat("h:db.errors.not-allowed", 2)

    def test_empty_allow_list_allows_nothing(self):
        self.start_db(allowed="")
        self.assert_error(self.call("cct.add", [1, 2]), "not-allowed")

    def test_sql_error_with_sqlstate(self):
        server = self.start_db()
        body = self.assert_error(self.call("cct.fail", ["P0042"], ident=3), "sql-error")
        self.assertEqual(body["sqlstate"], "P0042")
        self.assertEqual(body["msg"], "failed on purpose")
        self.assertEqual(body["ident"], 3)
        body = self.assert_error(self.call("cct.add", ["x", 1]), "sql-error")
        self.assertEqual(body["sqlstate"], "22P02")
        body = self.assert_error(self.call("cct.nosuch", [1]), "not-allowed")
        # the next call goes on the same connection
        self.assertEqual(self.call("cct.add", [1, 2]).get_body()["data"], [3])
        server.wait_stat("h:db.errors.sql-error", 2)

    def test_statement_timeout(self):
        server = self.start_db(worker_threads="1", statement_timeout="0.3")
        body = self.assert_error(self.call("cct.sleep", [5]), "timeout")
        self.assertEqual(body["sqlstate"], "57014")
        self.assertEqual(self.call("cct.sleep", [0]).get_body()["data"], [1])
        self.assertGreater(server.wait_stat("h:db.db_time", 0.3), 0.29)

    def test_bad_requests(self):
        self.start_db(worker_threads="1")  # a refused call must not hold the one connection
        for fields in (
            {"params": [1]},
            {"function": 12},
            {"function": "cct.add", "params": 5},
            {"function": "cct.add", "params": "[1,"},
            {"function": "cct.add", "params": [1, 2], "return": "many"},
            {"function": "cct.add", "params": [{"a": 1}, [{"b": 2}]]},
            {"function": "a.b.c"},
            {"function": "cct.add", "params": list(range(101))},
            {"function": "cct.greet", "params": ["nul \u0000 in a string"]},
        ):
            with self.subTest(fields=fields):
                reply = self.query(self.sock, "db", {"return": "one", **fields})
                self.assert_error(reply, "bad-request")
        self.assertEqual(self.call("cct.add", [1, 2]).get_body()["data"], [3])

    def test_injection(self):
        self.start_db(allowed="*")
        attempts = [
            "cct.add(1,2); drop table cct.log; --",
            'cct."add"',
            "cct.add;drop table cct.log",
            "cct.add --",
            "pg_catalog.pg_sleep(10)--",
        ]
        for name in attempts:
            with self.subTest(function=name):
                self.assert_error(self.call(name, [1, 2]), "bad-request")
        for key in ("a => 1); drop table cct.log; --", 'a"', "a b", "", "a;"):
            with self.subTest(param=key):
                self.assert_error(self.call("cct.add", {key: 1, "b": 2}), "bad-request")
        # values are bound: stored as sent, byte for byte
        for value in ("'); drop table cct.log; --", "x' || pg_sleep(5) || '", "%s %(a)s \\"):
            with self.subTest(value=value):
                self.call("cct.record", [value])
                self.assertEqual(sql_value("select count(*) from cct.log where v = %s", value), 1)
        self.assertEqual(sql_value("select to_regclass('cct.log')::text"), "cct.log")


class TestLoad(DBTestCase):
    def test_300_concurrent_calls(self):
        server = self.start_db()
        n = 300
        for i in range(n):
            msg = CCMessage.build(
                "db", {"function": "cct.add", "params": [i, i], "return": "one", "ident": i},
                route=[b"Q%d" % i],
            )  # fmt: skip
            self.sock.send_multipart(msg.frames)
        answers = {}
        while len(answers) < n:
            reply = CCMessage(self.recv(self.sock))
            body = reply.get_body()
            self.assertEqual(reply.type, "reply.db", body)
            answers[reply.route[0]] = body
        for i in range(n):
            body = answers[b"Q%d" % i]
            self.assertEqual(body["data"], [2 * i])
            self.assertEqual(body["ident"], i)
        self.assertEqual(server.wait_stat("h:db.ok", n), n)

    def test_queue_bound(self):
        server = self.start_db(worker_threads="1", zmq_hwm="2")
        # the connection is open (else all would wait for it in the queue)
        self.assertEqual(self.call("cct.add", [1, 2], qid=b"warm").get_body()["data"], [3])
        for i in range(6):
            msg = CCMessage.build(
                "db", {"function": "cct.sleep", "params": [0.2], "return": "one"},
                route=[b"Q%d" % i],
            )  # fmt: skip
            self.sock.send_multipart(msg.frames)
        codes = [CCMessage(self.recv(self.sock)).get_body().get("code", "ok") for _ in range(6)]
        # one runs, two wait, three are refused
        self.assertEqual(sorted(codes), ["ok"] * 3 + ["overloaded"] * 3)
        server.wait_stat("h:db.dropped", 3)


class TestRestart(DBTestCase):
    def test_database_restart(self):
        if not PG.can_restart:
            self.skipTest("CC_TEST_DSN: cannot restart an external database")
        self.start_db(worker_threads="3")
        for i in range(6):
            self.assertEqual(self.call("cct.add", [i, 1]).get_body()["data"], [i + 1])
        PG.stop()
        try:
            for i in range(4):
                self.assert_error(self.call("cct.add", [1, 2]), "db-unavailable")
        finally:
            PG.start()
        # every old connection is found gone and a new one opened
        for i in range(6):
            self.assertEqual(self.call("cct.add", [i, 2]).get_body()["data"], [i + 2])

    def test_connection_killed_mid_session(self):
        self.start_db(worker_threads="1")
        self.assertEqual(self.call("cct.add", [1, 1]).get_body()["data"], [2])
        sql_value(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        )
        wait_for(
            lambda: sql_value(
                "select count(*) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid()"
            )
            == 0
        )
        self.assertEqual(self.call("cct.add", [2, 2]).get_body()["data"], [4])


class TestUnresponsiveServer(DBTestCase):
    def test_connect_is_bounded_and_the_loop_goes_on(self):
        """A server that accepts and never answers: calls fail after connect-timeout, and
        meanwhile calls on the working database are answered."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody speaks
        self.addCleanup(silent.close)
        port = silent.getsockname()[1]
        server = self.start_server(
            "db",
            ccserver_section("db") + "\n[routes]\ndeaddb = h:dead\ndb = h:db\n\n"
            "[h:dead]\nhandler = dbhandler\ndb = host=127.0.0.1 port=%d dbname=x\n"
            "allowed-functions = *\nconnect-timeout = 2\n\n"
            "[h:db]\nhandler = dbhandler\ndb = %s\nallowed-functions = cct.add\n"
            % (port, PG.dsn()),
        )
        self.sock = self.dealer(server.endpoint)
        started = time.monotonic()
        for i in range(3):
            self.sock.send_multipart(
                CCMessage.build("deaddb", {"function": "f", "return": "one"},
                                route=[b"D%d" % i]).frames  # fmt: skip
            )
        for i in range(5):
            self.assertEqual(self.call("cct.add", [i, 1]).get_body()["data"], [i + 1])
        self.assertLess(time.monotonic() - started, 1.5, "calls waited for the dead database")
        for _ in range(3):
            body = self.assert_error(CCMessage(self.recv(self.sock)), "db-unavailable")
            self.assertIn("timed out", body["msg"])
        self.assertLess(time.monotonic() - started, 8)
        server.wait_stat("h:dead.errors.db-unavailable", 3)


class TestLifecycle(DBTestCase):
    def test_bad_config_refuses_to_start(self):
        for option in ("allowed-functions = cct.add, a.b.c", "worker-threads = 0"):
            with self.subTest(option=option):
                name = "bad%d" % len(self.servers)
                out = self.start_failing(
                    name,
                    ccserver_section(name)
                    + "[routes]\ndb = h:db\n[h:db]\nhandler = dbhandler\ndb = %s\n%s\n"
                    % (PG.dsn(), option),
                )
                self.assertIn("[h:db]:", out)

    def test_reload_replaces_allow_list(self):
        server = self.start_db(allowed="cct.add")
        self.assertEqual(self.call("cct.add", [1, 2]).get_body()["data"], [3])
        with open(server.ini, encoding="utf8") as f:
            ini = f.read()
        server.write_ini(ini.replace("= cct.add", "= cct.greet"))
        self.assertEqual(self.run_command(server.command("-r")).returncode, 0)
        server.wait_log("reloaded")
        self.assert_error(self.call("cct.add", [1, 2]), "not-allowed")
        self.assertEqual(self.call("cct.greet", ["z"]).get_body()["data"], ["hello, z"])

    def test_stop_answers_running_and_waiting_calls(self):
        server = self.start_db(worker_threads="2")
        for i in range(6):
            msg = CCMessage.build(
                "db", {"function": "cct.sleep", "params": [0.5], "return": "one"},
                route=[b"Q%d" % i],
            )  # fmt: skip
            self.sock.send_multipart(msg.frames)
        wait_for(
            lambda: sql_value(
                "select count(*) from pg_stat_activity where query like '%%cct%%sleep%%' "
                "and state = 'active' and pid <> pg_backend_pid()"
            )
            == 2
        )
        self.assertEqual(server.stop(), 0)
        codes = sorted(
            CCMessage(self.recv(self.sock)).get_body().get("code", "ok") for _ in range(6)
        )
        # the two running run to the end; the four still waiting are refused
        self.assertEqual(codes, ["ok"] * 2 + ["shutting-down"] * 4)
        self.assertEqual(
            sql_value("select count(*) from pg_stat_activity where query like '%%cct%%sleep%%'"
                      " and pid <> pg_backend_pid()"), 0
        )  # fmt: skip

    def test_stop_cancels_a_call_that_runs_on(self):
        server = self.start_db(worker_threads="1")
        self.sock.send_multipart(
            CCMessage.build(
                "db", {"function": "cct.sleep", "params": [60], "return": "one"}, route=[b"Q"]
            ).frames
        )
        wait_for(
            lambda: sql_value(
                "select count(*) from pg_stat_activity where query like '%%cct%%sleep%%' "
                "and state = 'active' and pid <> pg_backend_pid()"
            )
            == 1
        )
        self.assertEqual(server.stop(), 0)
        self.assert_error(CCMessage(self.recv(self.sock)), "timeout")
        server.wait_log("cancelling calls still running")
