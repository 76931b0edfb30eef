// RFC 9440 §2.2 Client-Cert for nginx, which has no variable holding it: the body of a PEM
// certificate is the base64 of its DER, so dropping the BEGIN/END lines and the line breaks
// gives the structured-field byte sequence `:<base64 DER>:`. Empty unless nginx verified the
// certificate against ssl_client_certificate; an empty value makes proxy_set_header send none.
function rfc9440(r) {
    const pem = r.variables.ssl_client_raw_cert;
    if (!pem || r.variables.ssl_client_verify !== 'SUCCESS') {
        return '';
    }
    return ':' + pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '') + ':';
}
export default { rfc9440 };
