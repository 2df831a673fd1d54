//! Key templates: `{ip}`, `{header:NAME}`, `{query:NAME}`, `{api}`, `{operation}`,
//! `{var:NAME}`, `{claim:NAME}`, `{subscription}`, `{product}`, literals and any mix of them
//! (`{api}:{header:X-Client}`).
//!
//! A template is parsed once, when the configuration loads, into a list of parts; rendering
//! appends bytes to a buffer the caller reuses, so it costs no allocation per request. Rate
//! limits, quotas, caches and header values all render their keys through this one type.
//! `{client_cert:...}` is reserved for mTLS and refused until it exists. Whether a route
//! checks subscription keys is not known here: the configuration refuses `{subscription}` and
//! `{product}` on routes without the check ([`Template::reads_subscription`]).

use crate::route::HeaderLookup;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Literal(Box<[u8]>),
    /// The client's address (the connection's peer).
    Ip,
    /// The first value of a request header (name lower case); empty when absent.
    Header(Box<[u8]>),
    /// The first value of a query parameter, as sent (not decoded); empty when absent.
    Query(Box<[u8]>),
    /// The API's name (empty outside APIs: the route's name).
    Api,
    /// The operation's id (empty outside operations).
    Operation,
    /// A variable set by an earlier policy (`cache-lookup-value`), by its index.
    Var(u16),
    /// A path parameter of the operation's URL template (`{id}` in `/orders/{id}`), by index.
    PathParam(u16),
    /// A claim of the token an earlier `validate-jwt` verified (empty without one).
    Claim(Box<str>),
    /// The id of the subscription whose key the request presented (empty without one).
    Subscription,
    /// A field of the TLS client certificate, by its index in [`crate::tls::identity::FIELDS`]
    /// (empty without a certificate).
    ClientCert(u8),
    /// The product the request was admitted under (empty without one).
    Product,
}

/// A compiled template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    parts: Box<[Part]>,
}

/// Names a template may use besides the fixed ones: variables declared by policies and the
/// path parameters of the operation the template belongs to.
#[derive(Default)]
pub struct Scope<'a> {
    pub vars: &'a [String],
    pub path_params: &'a [String],
}

/// What a template reads from the request it is rendered for.
pub struct Request<'a, H: HeaderLookup> {
    pub ip: &'a [u8],
    pub query: &'a [u8],
    pub headers: &'a H,
    pub api: &'a str,
    pub operation: &'a str,
    pub vars: &'a [Option<bytes::Bytes>],
    /// Spans of the path parameters in `path`.
    pub path: &'a [u8],
    pub path_params: &'a [(u32, u32)],
    /// The claims of the token `validate-jwt` verified, if one did.
    pub claims: Option<&'a super::auth::jwt::Verified>,
    /// The subscription's id and the product's name; empty when there is none.
    pub subscription: &'a [u8],
    pub product: &'a [u8],
    /// The verified TLS client certificate of the connection, if it presented one.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
}

impl Template {
    /// Parses `text`. `{` starts a variable up to the next `}`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str, scope: &Scope<'_>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'{' => {
                    let end = text[i..]
                        .find('}')
                        .map(|e| i + e)
                        .ok_or_else(|| format!("{text:?}: '{{' at byte {i} is never closed"))?;
                    let name = &text[i + 1..end];
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(variable(name, scope).map_err(|e| format!("{text:?}: {e}"))?);
                    i = end + 1;
                }
                b'}' => return Err(format!("{text:?}: '}}' at byte {i} has no '{{'")),
                b => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Template {
            parts: parts.into(),
        })
    }

    /// A template of fixed text.
    pub fn literal(text: &[u8]) -> Template {
        Template {
            parts: if text.is_empty() {
                Box::default()
            } else {
                Box::new([Part::Literal(text.into())])
            },
        }
    }

    /// The text, when the template has no variables.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match &*self.parts {
            [] => Some(b""),
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template reads `{subscription}` or `{product}`.
    pub fn reads_subscription(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Subscription | Part::Product))
    }

    /// Whether the template reads the request's path parameters.
    pub fn uses_path_params(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::PathParam(_)))
    }

    /// Appends the rendered template to `out`.
    #[inline]
    pub fn render<H: HeaderLookup>(&self, req: &Request<'_, H>, out: &mut Vec<u8>) {
        for part in self.parts.iter() {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Ip => out.extend_from_slice(req.ip),
                Part::Header(name) => {
                    if let Some(v) = req.headers.get(name) {
                        out.extend_from_slice(v);
                    }
                }
                Part::Query(name) => {
                    if let Some(v) = crate::route::query_param(req.query, name) {
                        out.extend_from_slice(v);
                    }
                }
                Part::Api => out.extend_from_slice(req.api.as_bytes()),
                Part::Operation => out.extend_from_slice(req.operation.as_bytes()),
                Part::Var(i) => {
                    if let Some(Some(v)) = req.vars.get(*i as usize) {
                        out.extend_from_slice(v);
                    }
                }
                Part::Claim(name) => {
                    if let Some(claims) = req.claims {
                        claims.claim_text(name, out);
                    }
                }
                Part::Subscription => out.extend_from_slice(req.subscription),
                Part::ClientCert(i) => {
                    if let Some(v) = req
                        .client_cert
                        .and_then(|c| c.field(crate::tls::identity::FIELDS[*i as usize]))
                    {
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                Part::Product => out.extend_from_slice(req.product),
                Part::PathParam(i) => {
                    if let Some(&(s, e)) = req.path_params.get(*i as usize) {
                        if let Some(v) = req.path.get(s as usize..e as usize) {
                            out.extend_from_slice(v);
                        }
                    }
                }
            }
        }
    }
}

fn variable(name: &str, scope: &Scope<'_>) -> Result<Part, String> {
    let (kind, arg) = match name.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (name, None),
    };
    let need_arg = |what: &str| -> Result<&str, String> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(format!("{{{kind}:NAME}} needs a {what} name")),
        }
    };
    let no_arg = || -> Result<(), String> {
        match arg {
            None => Ok(()),
            Some(_) => Err(format!("{{{kind}}} takes no argument")),
        }
    };
    match kind {
        "ip" => no_arg().map(|_| Part::Ip),
        "api" => no_arg().map(|_| Part::Api),
        "operation" => no_arg().map(|_| Part::Operation),
        "subscription" => no_arg().map(|_| Part::Subscription),
        "product" => no_arg().map(|_| Part::Product),
        "header" => {
            let h = need_arg("header")?;
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(format!("{h:?} is not a header name"));
            }
            Ok(Part::Header(h.to_ascii_lowercase().into_bytes().into()))
        }
        "query" => Ok(Part::Query(need_arg("query parameter")?.as_bytes().into())),
        "var" => {
            let v = need_arg("variable")?;
            match scope.vars.iter().position(|n| n == v) {
                Some(i) => Ok(Part::Var(i as u16)),
                None => Err(format!(
                    "no variable named {v:?} is set by an earlier policy (cache-lookup-value sets one)"
                )),
            }
        }
        "claim" => Ok(Part::Claim(need_arg("claim")?.into())),
        "client_cert" => {
            let field = need_arg("client certificate field")?;
            match crate::tls::identity::FIELDS
                .iter()
                .position(|f| *f == field)
            {
                Some(i) => Ok(Part::ClientCert(i as u8)),
                None => Err(format!(
                    "{{{name}}}: unknown client certificate field {field:?} (known: {})",
                    crate::tls::identity::FIELDS.join(", ")
                )),
            }
        }
        _ if arg.is_none() => match scope.path_params.iter().position(|p| p == kind) {
            Some(i) => Ok(Part::PathParam(i as u16)),
            None => Err(format!("unknown variable {{{name}}}: {}", known(scope))),
        },
        _ => Err(format!("unknown variable {{{name}}}: {}", known(scope))),
    }
}

fn known(scope: &Scope<'_>) -> String {
    let mut s = String::from(
        "expected {ip}, {header:NAME}, {query:NAME}, {api}, {operation}, {claim:NAME}, \
         {subscription}, {product} or {var:NAME}",
    );
    if !scope.path_params.is_empty() {
        s.push_str(", or a path parameter: ");
        let names: Vec<String> = scope
            .path_params
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect();
        s.push_str(&names.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(Vec<(&'static [u8], &'static [u8])>);
    impl HeaderLookup for H {
        fn get(&self, name: &[u8]) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    fn render(t: &Template) -> String {
        let headers = H(vec![(b"X-Client", b"acme")]);
        let vars = [Some(bytes::Bytes::from_static(b"cached"))];
        let req = Request {
            ip: b"10.0.0.1",
            query: b"a=1&key=k9",
            headers: &headers,
            api: "orders",
            operation: "get-order",
            vars: &vars,
            path: b"/orders/42",
            path_params: &[(8, 10)],
            claims: None,
            subscription: b"gold-1",
            product: b"gold",
            client_cert: None,
        };
        let mut out = Vec::new();
        t.render(&req, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_every_part() {
        let vars = ["v".to_string()];
        let params = ["id".to_string()];
        let scope = Scope {
            vars: &vars,
            path_params: &params,
        };
        let t = Template::parse(
            "{api}/{operation}:{ip}|{header:X-CLIENT}|{query:key}|{query:none}|{var:v}|{id}|{{x}}",
            &scope,
        )
        .unwrap();
        assert_eq!(
            render(&t),
            "orders/get-order:10.0.0.1|acme|k9||cached|42|{x}"
        );
    }

    #[test]
    fn literals_and_errors() {
        let scope = Scope::default();
        let t = Template::parse("fixed", &scope).unwrap();
        assert_eq!(t.as_literal(), Some(&b"fixed"[..]));
        assert_eq!(
            Template::parse("", &scope).unwrap().as_literal(),
            Some(&b""[..])
        );
        for bad in [
            "{ip",
            "x}",
            "{nope}",
            "{header:}",
            "{ip:x}",
            "{claim:}",
            "{var:x}",
        ] {
            assert!(Template::parse(bad, &scope).is_err(), "{bad}");
        }
        assert!(Template::parse("{client_cert:subject}", &scope).is_ok());
        let e = Template::parse("{client_cert:color}", &scope).unwrap_err();
        assert!(e.contains("unknown client certificate field"), "{e}");
        for bad in ["{subscription:x}", "{product:x}"] {
            assert!(Template::parse(bad, &scope).is_err(), "{bad}");
        }
    }

    #[test]
    fn subscription_and_product_render_and_are_reported() {
        let scope = Scope::default();
        let t = Template::parse("{product}/{subscription}", &scope).unwrap();
        assert_eq!(render(&t), "gold/gold-1");
        assert!(t.reads_subscription());
        assert!(Template::parse("{product}", &scope)
            .unwrap()
            .reads_subscription());
        assert!(!Template::parse("{api}:{ip}", &scope)
            .unwrap()
            .reads_subscription());
    }
}
