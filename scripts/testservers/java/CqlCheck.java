// Smoke check for the Cassandra test server, run with Java's source launcher on
// the classpath of maven/cassandra (its shaded DataStax driver 3.x):
//   java -cp "$CHATD_TS_DIR/lib/cassandra/*" CqlCheck.java 127.0.0.1 9042
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;

public class CqlCheck {
    public static void main(String[] args) {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 9042;
        try (Cluster cluster = Cluster.builder().addContactPoint(host).withPort(port)
                .withoutJMXReporting().withoutMetrics().build();
             Session s = cluster.connect()) {
            Row r = s.execute("SELECT release_version FROM system.local").one();
            s.execute("CREATE KEYSPACE IF NOT EXISTS testservers_smoke WITH replication = "
                    + "{'class':'SimpleStrategy','replication_factor':1}");
            s.execute("CREATE TABLE IF NOT EXISTS testservers_smoke.kv (k text PRIMARY KEY, v text)");
            s.execute("INSERT INTO testservers_smoke.kv (k, v) VALUES ('k', 'v')");
            String v = s.execute("SELECT v FROM testservers_smoke.kv WHERE k = 'k'").one().getString("v");
            if (!"v".equals(v)) throw new IllegalStateException("read back " + v);
            System.out.println("cassandra " + r.getString("release_version") + ": CQL ok");
        }
    }
}
