package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS secures one kind of connection: to a backend (NATS, Kafka, ScyllaDB,
// Elasticsearch) or between roles (gRPC). Off unless Enabled; the files are
// PEM and read at start-up.
type TLS struct {
	Enabled bool `koanf:"enabled"`
	// CAFile holds the roots that verify the server's certificate (and, on
	// a gRPC server, the clients'); empty: the system's roots.
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are this process's certificate: its client
	// certificate for mutual TLS, and for gRPC also its server certificate.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ServerName is the name to verify in the server's certificate when it
	// differs from the host dialled.
	ServerName string `koanf:"server_name"`
}

// validate names key (e.g. "kafka.tls") in its errors.
func (t TLS) validate(key string) error {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" {
			return fmt.Errorf("in %s: files or server_name are set but enabled is false", key)
		}
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("in %s: cert_file and key_file go together", key)
	}
	return nil
}

// Client returns the TLS configuration for dialling, nil when TLS is off.
func (t TLS) Client() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if err := t.load(c); err != nil {
		return nil, err
	}
	c.RootCAs = c.ClientCAs
	c.ClientCAs = nil
	return c, nil
}

// Server returns the TLS configuration of a gRPC server, nil when TLS is
// off. It needs CertFile and KeyFile; with CAFile, clients must present a
// certificate signed by it (mutual TLS), which is what keeps a process
// that reaches the port but holds no certificate from calling the roles.
func (t TLS) Server() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	if t.CertFile == "" {
		return nil, errors.New("a TLS server needs cert_file and key_file")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if err := t.load(c); err != nil {
		return nil, err
	}
	if c.ClientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// load reads the files into c: the CA pool into ClientCAs, the key pair
// into Certificates.
func (t TLS) load(c *tls.Config) error {
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
		c.ClientCAs = pool
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("cert_file and key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return nil
}
