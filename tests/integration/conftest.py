# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures: a private system bus, the polkit mock, the daemon, clients.

Every test gets a fresh polkit mock and a fresh daemon (its own state and bpf
directory); the bus and the bpffs mount are shared by the session. Markers
tune the daemon of one test:

    @pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 2},
                               restriction='enforce')
    @pytest.mark.nsresd_fault('helper-stop:65534-stuck')
"""

import os

import pytest

import harness as h

# Tests that were skipped, in any phase.
_skipped = []

# Where the sanitized programs of an ASan+UBSan build write their reports
# (log_path in ASAN_OPTIONS and UBSAN_OPTIONS, set by tests/run.sh), and the
# reports already charged to a test.
_sanitizer_logs = os.environ.get('NSRESD_SANITIZER_LOGS')
_sanitizer_reports_seen = set()


def _new_sanitizer_reports():
    if not _sanitizer_logs:
        return []
    new = sorted(set(os.listdir(_sanitizer_logs)) - _sanitizer_reports_seen)
    _sanitizer_reports_seen.update(new)
    reports = []
    for name in new:
        with open(os.path.join(_sanitizer_logs, name), errors='replace') as f:
            reports.append(f'{name}:\n{f.read()[-20000:]}')
    return reports


def pytest_report_header(config):
    return ('nsresd under test runs with Restriction=permissive unless a test sets it: this '
            'host kernel cannot run BPF LSM programs (tests/vm checks the restriction in a VM)')


def pytest_configure(config):
    config.addinivalue_line('markers', 'nsresd_config(allocator=None, restriction="permissive", '
                                       'delegation=None): configuration of the daemon of this test')
    config.addinivalue_line('markers', 'nsresd_fault(spec): NSRESD_FAULT for the first start of the daemon')


@pytest.fixture(scope='session')
def environment():
    missing = [str(p) for p in (h.daemon_binary(), h.client_binary()) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f'not built: {", ".join(missing)}. Build the project first (meson setup build && '
                    f'ninja -C build) or point NSRESD_BUILD_DIR at a build directory.', pytrace=False)
    if os.geteuid() != 0:
        pytest.fail('the integration tests start the daemon and a system bus: run them as root',
                    pytrace=False)
    env = h.Environment()
    try:
        env.start()
        yield env
    finally:
        env.close()


def _attach_log(request, path):
    request.node.__dict__.setdefault('nsresd_logs', []).append(path)


@pytest.fixture(autouse=True)
def sanitizer_reports():
    """A report of ASan, LeakSanitizer or UBSan from any program during the
    test (the daemon at exit included: this is torn down after it) fails it,
    whatever that program's exit status did to the test."""
    _new_sanitizer_reports()
    yield
    reports = _new_sanitizer_reports()
    if reports:
        pytest.fail('sanitizer reports:\n' + '\n'.join(reports), pytrace=False)


@pytest.fixture
def attach_log(request):
    """attach_log(path): show this log in the report if the test fails."""
    return lambda path: _attach_log(request, path)


@pytest.fixture
def polkit(environment, request):
    log = environment.logs / f'polkit-{h.safe_file_name(request.node.name)}.log'
    _attach_log(request, log)
    mock = h.PolkitMock(environment, log)
    yield mock
    mock.stop()


@pytest.fixture
def daemon_factory(environment, polkit, request):
    """start(config=None, fault=None) -> a running Daemon; all are stopped
    (and must exit 0 on SIGTERM within 5 s) and cleaned up after the test."""
    daemons = []

    def start(config=None, fault=None):
        d = h.Daemon(environment, request.node.name, config or h.config_text(), fault=fault)
        daemons.append(d)
        _attach_log(request, d.log_path)
        return d.start()

    yield start

    problems = h.stop_daemons(daemons)
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


@pytest.fixture
def daemon(daemon_factory, request):
    marker = request.node.get_closest_marker('nsresd_config')
    config = h.config_text(**marker.kwargs) if marker else h.config_text()
    fault = request.node.get_closest_marker('nsresd_fault')
    return daemon_factory(config=config, fault=fault.args[0] if fault else None)


@pytest.fixture
def root(environment):
    """A connection as root (the test process)."""
    client = h.Client(environment.address)
    yield client
    client.close()


@pytest.fixture
def signals(environment):
    recorder = h.SignalRecorder(environment.address)
    yield recorder
    recorder.close()


@pytest.fixture
def userns():
    """make(user=None, **kwargs) -> Userns; all are released after the test."""
    made = []
    owner = os.getpid()

    def make(user=None, **kwargs):
        # Namespaces for a call as another user are made here and passed in;
        # a child making its own uses h.make_userns().
        assert os.getpid() == owner, 'the userns fixture was called in a forked child'
        ns = h.make_userns(user, **kwargs)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.release()


@pytest.fixture
def tmpfs(environment):
    """make() -> a Tmpfs mounted for this test; all are unmounted after it."""
    made = []

    def make():
        mount = h.Tmpfs(environment.root)
        made.append(mount)
        return mount

    yield make
    for mount in made:
        mount.release()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for path in item.__dict__.get('nsresd_logs', []):
            try:
                text = path.read_text(errors='replace')
            except OSError:
                continue
            if len(text) > 30000:
                text = '[...]\n' + text[-30000:]
            report.sections.append((f'log {path.name}', text))


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, 'wasxfail'):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In CI a skipped test is a test that did not run: fail the run.
    if os.environ.get('CI') and _skipped and session.exitstatus == 0:
        session.exitstatus = 1
    # Reports written outside any test (by the session's fixtures, or after
    # the last test ended).
    session.config.nsresd_late_reports = _new_sanitizer_reports()
    if session.config.nsresd_late_reports:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for report in getattr(config, 'nsresd_late_reports', []):
        terminalreporter.write_line(f'sanitizer report outside any test: {report}', red=True)
    if os.environ.get('CI') and _skipped:
        terminalreporter.write_line(f'CI is set: {len(_skipped)} skipped test(s) '
                                    f'count as failures: {", ".join(_skipped)}', red=True)
