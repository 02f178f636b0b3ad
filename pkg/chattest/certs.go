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

// Certs are PEM files of a private CA and two certificates it signed, for
// "localhost" and 127.0.0.1 and good for both server and client
// authentication, plus one signed by another CA.
type Certs struct {
	CA             string // the CA's certificate
	Cert, Key      string // signed by CA
	OtherCert      string // signed by a CA nobody trusts
	OtherKey       string
	Pool           *x509.CertPool // CA, parsed
	Pair           tls.Certificate
	OtherPair      tls.Certificate
	ServerTLS      *tls.Config // serves Pair, requires no client certificate
	MutualTLS      *tls.Config // serves Pair, requires a client certificate signed by CA
	ClientTLS      *tls.Config // trusts CA, presents no certificate
	ClientPairTLS  *tls.Config // trusts CA, presents Pair
	ClientOtherTLS *tls.Config // trusts CA, presents OtherPair
}

// NewCerts writes a fresh set into a temporary directory of tb.
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	dir := tb.TempDir()
	caCert, caKey := newCA(tb, "chatd test CA")
	otherCA, otherKey := newCA(tb, "untrusted CA")
	c := &Certs{
		CA:        filepath.Join(dir, "ca.pem"),
		Cert:      filepath.Join(dir, "cert.pem"),
		Key:       filepath.Join(dir, "key.pem"),
		OtherCert: filepath.Join(dir, "other-cert.pem"),
		OtherKey:  filepath.Join(dir, "other-key.pem"),
		Pool:      x509.NewCertPool(),
	}
	writePEM(tb, c.CA, "CERTIFICATE", caCert.Raw)
	c.Pool.AddCert(caCert)
	c.Pair = leaf(tb, caCert, caKey, c.Cert, c.Key)
	c.OtherPair = leaf(tb, otherCA, otherKey, c.OtherCert, c.OtherKey)
	c.ServerTLS = &tls.Config{Certificates: []tls.Certificate{c.Pair}, MinVersion: tls.VersionTLS12}
	c.MutualTLS = &tls.Config{Certificates: []tls.Certificate{c.Pair}, ClientCAs: c.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	c.ClientTLS = &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
	c.ClientPairTLS = &tls.Config{RootCAs: c.Pool, Certificates: []tls.Certificate{c.Pair}, MinVersion: tls.VersionTLS12}
	c.ClientOtherTLS = &tls.Config{RootCAs: c.Pool, Certificates: []tls.Certificate{c.OtherPair}, MinVersion: tls.VersionTLS12}
	return c
}

func template(cn string) *x509.Certificate {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func newCA(tb testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	t := template(cn)
	t.IsCA, t.BasicConstraintsValid = true, true
	t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, t, t, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

func leaf(tb testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	t := template("localhost")
	t.DNSNames = []string{"localhost"}
	t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, certPath, "CERTIFICATE", der)
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
