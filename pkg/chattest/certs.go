package chattest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files of a private CA and a certificate it signed, for
// "localhost" and 127.0.0.1 and good for both server and client
// authentication, plus a key of a certificate another CA signed; and the
// TLS configurations tests need from them.
type Certs struct {
	CA             string      // the CA's certificate
	Cert, Key      string      // signed by CA
	OtherKey       string      // the key of a certificate signed by a CA nobody trusts
	ServerTLS      *tls.Config // serves Cert, requires no client certificate
	MutualTLS      *tls.Config // serves Cert, requires a client certificate signed by CA
	ClientTLS      *tls.Config // trusts CA, presents no certificate
	ClientPairTLS  *tls.Config // trusts CA, presents Cert
	ClientOtherTLS *tls.Config // trusts CA, presents the other CA's certificate
}

// NewCerts writes a fresh set into a temporary directory of tb.
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	dir := tb.TempDir()
	ca, caKey := issue(tb, "chatd test CA", nil, nil)
	other, otherKey := issue(tb, "untrusted CA", nil, nil)
	c := &Certs{
		CA:       filepath.Join(dir, "ca.pem"),
		Cert:     filepath.Join(dir, "cert.pem"),
		Key:      filepath.Join(dir, "key.pem"),
		OtherKey: filepath.Join(dir, "other-key.pem"),
	}
	writePEM(tb, c.CA, "CERTIFICATE", ca.Raw)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair := leaf(tb, ca, caKey, c.Cert, c.Key)
	otherPair := leaf(tb, other, otherKey, filepath.Join(dir, "other-cert.pem"), c.OtherKey)
	c.ServerTLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	c.MutualTLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	c.ClientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.ClientPairTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	c.ClientOtherTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{otherPair}, MinVersion: tls.VersionTLS12}
	return c
}

// issue makes a key and a certificate for it named cn, signed by parent
// (a CA for "localhost" and 127.0.0.1) or, with parent nil, a self-signed
// CA.
func issue(tb testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	t := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if parent == nil {
		t.IsCA, t.BasicConstraintsValid = true, true
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = t, key
	} else {
		t.DNSNames = []string{"localhost"}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

// leaf issues a certificate for "localhost" signed by ca, writes it and
// its key to certPath and keyPath, and returns the pair.
func leaf(tb testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) tls.Certificate {
	tb.Helper()
	cert, key := issue(tb, "localhost", ca, caKey)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, certPath, "CERTIFICATE", cert.Raw)
	writePEM(tb, keyPath, "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		tb.Fatal(err)
	}
	return pair
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
