package warden.local;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Result;
import org.neo4j.internal.helpers.HostnamePort;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.kernel.internal.Version;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Runs a real, embedded Neo4j Community DBMS for Warden's local runtime and integration tests.
 *
 * <p>Bolt only (HTTP/HTTPS off), on 127.0.0.1, authentication on. Everything lives under the home
 * directory the caller chooses ({@code HOME/data}, {@code HOME/logs}, ...). The password of the built-in
 * {@code neo4j} user is taken from the environment variable {@value #PASSWORD_ENV} (never from the
 * command line) and set through the {@code system} database on every start, so the expired initial
 * password is replaced on the first start and later starts on the same directory keep working.
 *
 * <p>Protocol with the parent process ({@code local/neo4j.py}): once Bolt accepts connections the launcher
 * prints exactly one line to stdout:
 * <pre>WARDEN-NEO4J-READY bolt://127.0.0.1:PORT version=5.26.x edition=community</pre>
 * Everything else (Neo4j's user log, diagnostics) goes to stderr. On SIGTERM, on end of stdin
 * ({@code --exit-on-stdin-eof}) or when the parent process is gone ({@code --parent-pid}) the DBMS is shut
 * down cleanly by a JVM shutdown hook. Exit status: 0 after a clean shutdown, 2 for bad arguments, 1 when
 * the DBMS could not be started.
 *
 * <pre>
 * usage: Neo4jLauncher --home DIR [--port N] [--pagecache SIZE] [--exit-on-stdin-eof] [--parent-pid PID]
 * </pre>
 * {@code --port 0} (the default) binds a free port chosen by the OS; the ready line reports the real one.
 */
public final class Neo4jLauncher {

    /** Environment variable holding the password for the {@code neo4j} user. */
    public static final String PASSWORD_ENV = "WARDEN_NEO4J_PASSWORD";

    /** Prefix of the single readiness line on stdout. */
    public static final String READY_MARKER = "WARDEN-NEO4J-READY";

    private static final String HOST = "127.0.0.1";
    private static final String USER = "neo4j";
    private static final Duration DATABASE_TIMEOUT = Duration.ofMinutes(5);
    private static final Duration BOLT_TIMEOUT = Duration.ofSeconds(60);

    private static final PrintStream ERR = System.err;

    /** Counted down once build() has returned or failed; the shutdown hook waits for it. */
    private static final CountDownLatch BUILT = new CountDownLatch(1);
    private static final Duration BUILD_WAIT_ON_SHUTDOWN = Duration.ofMinutes(2);
    private static volatile DatabaseManagementService managementService;
    private static volatile boolean shuttingDown;

    private Neo4jLauncher() {}

    /** Parsed command line. */
    private record Options(Path home, int port, long pagecacheBytes, boolean exitOnStdinEof, long parentPid) {}

    public static void main(String[] args) {
        Options options;
        String password;
        try {
            options = parse(args);
            password = System.getenv(PASSWORD_ENV);
            if (password == null || password.isEmpty()) {
                throw new IllegalArgumentException("environment variable " + PASSWORD_ENV + " is not set");
            }
        } catch (IllegalArgumentException e) {
            log("error: " + e.getMessage());
            log("usage: Neo4jLauncher --home DIR [--port N] [--pagecache SIZE] [--exit-on-stdin-eof]"
                    + " [--parent-pid PID]");
            System.exit(2);
            return;
        }

        Runtime.getRuntime().addShutdownHook(new Thread(Neo4jLauncher::shutdown, "warden-neo4j-shutdown"));
        if (options.exitOnStdinEof()) {
            daemon("warden-stdin-watch", Neo4jLauncher::watchStdin);
        }
        if (options.parentPid() > 0) {
            daemon("warden-parent-watch", () -> watchParent(options.parentPid()));
        }

        try {
            String readyLine = start(options, password);
            System.out.println(readyLine);
            System.out.flush();
        } catch (Throwable t) {
            if (shuttingDown) {
                log("start-up interrupted by shutdown");
                return;  // the shutdown hook is running and ends the JVM
            }
            log("error: Neo4j failed to start: " + t);
            t.printStackTrace(ERR);
            // exit() runs the shutdown hook, which stops whatever part of the DBMS did start.
            System.exit(1);
            return;
        }

        // Park the main thread; the DBMS threads keep running until a signal / watcher calls exit().
        try {
            new CountDownLatch(1).await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static Options parse(String[] args) {
        Path home = null;
        int port = 0;
        long pagecache = ByteUnit.parse("256m");
        boolean exitOnStdinEof = false;
        long parentPid = 0;
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--home" -> home = Path.of(value(args, ++i, arg));
                case "--port" -> port = Integer.parseInt(value(args, ++i, arg));
                case "--pagecache" -> pagecache = ByteUnit.parse(value(args, ++i, arg));
                case "--exit-on-stdin-eof" -> exitOnStdinEof = true;
                case "--parent-pid" -> parentPid = Long.parseLong(value(args, ++i, arg));
                default -> throw new IllegalArgumentException("unknown argument: " + arg);
            }
        }
        if (home == null) {
            throw new IllegalArgumentException("--home is required");
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("--port out of range: " + port);
        }
        return new Options(home.toAbsolutePath(), port, pagecache, exitOnStdinEof, parentPid);
    }

    private static String value(String[] args, int i, String name) {
        if (i >= args.length) {
            throw new IllegalArgumentException(name + " needs a value");
        }
        return args[i];
    }

    /** Starts the DBMS, sets the password, waits for Bolt; returns the ready line. */
    private static String start(Options options, String password) throws IOException, InterruptedException {
        Files.createDirectories(options.home());
        DatabaseManagementService service;
        try {
            service = buildService(options);
            managementService = service;
        } finally {
            BUILT.countDown();
        }
        if (shuttingDown) {
            // A signal arrived during build(); the shutdown hook stops the DBMS.
            throw new IllegalStateException("shutdown requested during startup");
        }

        GraphDatabaseService system = service.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        GraphDatabaseService neo4j = service.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!system.isAvailable(DATABASE_TIMEOUT.toMillis()) || !neo4j.isAvailable(DATABASE_TIMEOUT.toMillis())) {
            throw new IllegalStateException("databases did not become available within " + DATABASE_TIMEOUT);
        }

        log("databases available");
        setPassword(system, password);

        int port = boltPort(system, options.port());
        awaitBolt(port);

        log("Bolt accepts connections on port " + port);
        String[] versionAndEdition = components(neo4j);
        return READY_MARKER + " bolt://" + HOST + ":" + port
                + " version=" + versionAndEdition[0] + " edition=" + versionAndEdition[1];
    }

    private static DatabaseManagementService buildService(Options options) {
        return new DatabaseManagementServiceBuilder(options.home())
                .setUserLogProvider(new Log4jLogProvider(ERR, Level.INFO))
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(HOST, options.port()))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.pagecache_memory, options.pagecacheBytes())
                // Never phone home (the neo4j-udc module is also excluded in the pom).
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Small, unpreallocated transaction logs: test runs create many short-lived stores.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(32))
                // Netty's graceful shutdown otherwise idles 2 x 5 s after the databases have stopped.
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(2))
                .build();
    }

    /**
     * Gives the built-in {@code neo4j} user the caller's password and clears "change required".
     *
     * <p>Neo4j creates {@code neo4j} with the expired password {@code neo4j} on the first start (the
     * server's {@code neo4j-admin dbms set-initial-password} does not exist in embedded mode). The embedded
     * API runs with full privileges and no login, so the administration command runs directly against the
     * {@code system} database: {@code ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED}. It runs
     * on every start, so the caller's password always wins. On a restart with the same password Neo4j
     * refuses it ("Old password and new password cannot be the same"), which just means the password is
     * already right; one query either way (the first Cypher query of a cold JVM takes seconds). If the
     * user was dropped it is created again.
     */
    private static void setPassword(GraphDatabaseService system, String password) {
        Map<String, Object> params = Map.of("password", password);
        try {
            system.executeTransactionally("ALTER USER " + USER + " SET PASSWORD $password CHANGE NOT REQUIRED", params);
            log("set the password of user " + USER);
        } catch (RuntimeException e) {
            if (hasMessage(e, "Old password and new password cannot be the same")) {
                log("password of user " + USER + " already set");
            } else if (hasMessage(e, "does not exist")) {
                system.executeTransactionally(
                        "CREATE USER " + USER + " SET PASSWORD $password CHANGE NOT REQUIRED", params);
                log("created user " + USER);
            } else {
                throw e;
            }
        }
    }

    private static boolean hasMessage(Throwable e, String text) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String message = t.getMessage();
            if (message != null && message.contains(text)) {
                return true;
            }
        }
        return false;
    }

    /** The port Bolt really listens on (differs from the configured one when that is 0). */
    private static int boltPort(GraphDatabaseService db, int configured) {
        try {
            HostnamePort address = ((GraphDatabaseAPI) db).getDependencyResolver()
                    .resolveDependency(ConnectorPortRegister.class)
                    .getLocalAddress(ConnectorType.BOLT);
            if (address != null && address.getPort() > 0) {
                return address.getPort();
            }
        } catch (RuntimeException e) {
            log("warning: could not read the Bolt port from Neo4j: " + e);
        }
        if (configured > 0) {
            return configured;
        }
        throw new IllegalStateException("Bolt connector did not report its port");
    }

    /** Waits until a Bolt handshake on the port succeeds, i.e. Bolt really accepts connections. */
    private static void awaitBolt(int port) throws InterruptedException {
        long deadline = System.nanoTime() + BOLT_TIMEOUT.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            try {
                if (boltHandshake(port)) {
                    return;
                }
            } catch (IOException e) {
                last = e;
            }
            Thread.sleep(100);
        }
        throw new IllegalStateException("Bolt on port " + port + " did not accept connections within "
                + BOLT_TIMEOUT + (last == null ? "" : ": " + last));
    }

    private static boolean boltHandshake(int port) throws IOException {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(HOST, port), 2000);
            socket.setSoTimeout(5000);
            OutputStream out = socket.getOutputStream();
            // Magic preamble, then four version proposals: 5.0-5.8, 4.4, none, none.
            out.write(new byte[] {
                (byte) 0x60, (byte) 0x60, (byte) 0xB0, (byte) 0x17,
                0, 8, 8, 5,
                0, 0, 4, 4,
                0, 0, 0, 0,
                0, 0, 0, 0,
            });
            out.flush();
            byte[] agreed = socket.getInputStream().readNBytes(4);
            return agreed.length == 4 && (agreed[2] != 0 || agreed[3] != 0);
        }
    }

    /**
     * {version, edition} from {@code dbms.components()} (run on a user database: the system database
     * refuses the WHERE), falling back to the kernel's own version.
     */
    private static String[] components(GraphDatabaseService db) {
        try {
            return db.executeTransactionally(
                    "CALL dbms.components() YIELD name, versions, edition"
                            + " WHERE name = 'Neo4j Kernel' RETURN versions[0] AS version, edition",
                    Map.of(),
                    (Result result) -> {
                        if (!result.hasNext()) {
                            return new String[] {Version.getNeo4jVersion(), "unknown"};
                        }
                        Map<String, Object> row = result.next();
                        return new String[] {String.valueOf(row.get("version")), String.valueOf(row.get("edition"))};
                    });
        } catch (RuntimeException e) {
            log("warning: dbms.components() failed: " + e);
            return new String[] {Version.getNeo4jVersion(), "unknown"};
        }
    }

    /**
     * Shutdown hook (SIGTERM, SIGINT, exit()): stop the DBMS cleanly, flushing and checkpointing the stores.
     * During start-up it first waits for build() to return, so even an early signal leaves a clean store.
     */
    private static void shutdown() {
        shuttingDown = true;
        try {
            if (!BUILT.await(BUILD_WAIT_ON_SHUTDOWN.toMillis(), TimeUnit.MILLISECONDS)) {
                log("Neo4j still starting after " + BUILD_WAIT_ON_SHUTDOWN + "; exiting without a clean shutdown");
                return;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        DatabaseManagementService service = managementService;
        managementService = null;
        if (service == null) {
            return;
        }
        log("shutting down Neo4j");
        try {
            service.shutdown();
            log("Neo4j stopped");
        } catch (Throwable t) {
            log("error during shutdown: " + t);
            t.printStackTrace(ERR);
        }
    }

    /** Exits when stdin reaches end of file: the parent closed the pipe or died. */
    private static void watchStdin() {
        InputStream in = System.in;
        byte[] buffer = new byte[256];
        try {
            while (in.read(buffer) >= 0) {
                // Input is ignored; only its end matters.
            }
        } catch (IOException e) {
            log("stdin watcher: " + e);
        }
        log("stdin closed, exiting");
        System.exit(0);
    }

    /** Exits when the parent process is gone. */
    private static void watchParent(long pid) {
        while (true) {
            boolean alive = ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
            if (!alive) {
                log("parent process " + pid + " is gone, exiting");
                System.exit(0);
                return;
            }
            try {
                TimeUnit.SECONDS.sleep(1);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private static void daemon(String name, Runnable body) {
        Thread thread = new Thread(body, name);
        thread.setDaemon(true);
        thread.start();
    }

    private static void log(String message) {
        long uptime = ManagementFactory.getRuntimeMXBean().getUptime();
        ERR.println("[warden-neo4j +" + uptime + "ms] " + message);
        ERR.flush();
    }
}
