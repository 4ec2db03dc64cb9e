// The gateway's GraphiQL (gateway/templates/gateway/graphiql.html): graphene-django's graphiql.js,
// but subscriptions go over WebSocket (graphql-transport-ws, the graphql-ws client) to
// GRAPHENE_SETTINGS.subscriptionPath, and the Authorization header of the headers pane goes in the
// socket's connection_init payload (graphql-ws connectionParams), so a subscription runs as the
// caller whose token is in the pane (anonymously without one). Queries and mutations go over HTTP
// with the pane's headers, as in graphene-django's.
(function (document, GRAPHENE_SETTINGS, GraphiQL, React, ReactDOM, graphqlWs, GraphiQLPluginExplorer,
           history, location) {
  "use strict";

  // The GraphQL parameters kept in the URL's fragment (#query=…&variables=…), so a page can be shared.
  var parameters = {};
  location.hash.substr(1).split("&").forEach(function (entry) {
    var eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(entry.slice(eq + 1));
    }
  });
  function locationQuery(params) {
    return "#" + Object.keys(params).map(function (key) {
      return encodeURIComponent(key) + "=" + encodeURIComponent(params[key]);
    }).join("&");
  }
  var graphqlParamNames = {query: true, variables: true, operationName: true};
  var otherParams = {};
  for (var k in parameters) {
    if (Object.prototype.hasOwnProperty.call(parameters, k) && graphqlParamNames[k] !== true) {
      otherParams[k] = parameters[k];
    }
  }
  var fetchURL = locationQuery(otherParams);  // this page's URL: queries are POSTed where it was served

  // ws:// (or wss://) on this page's host; none on a page whose path serves no subscriptions (/v<N>/graphql)
  var subscribeURL = GRAPHENE_SETTINGS.subscriptionPath
    ? location.origin.replace(/^http/, "ws") + GRAPHENE_SETTINGS.subscriptionPath : null;

  var headers = {};
  var csrf = document.querySelector("[name=csrfmiddlewaretoken]");
  if (csrf && csrf.value) {
    headers["X-CSRFToken"] = csrf.value;
  }

  function authorizationOf(paneHeaders) {
    for (var name in paneHeaders || {}) {
      if (name.toLowerCase() === "authorization") {
        return String(paneHeaders[name]);
      }
    }
    return "";
  }

  // The document of the query run, parsed here: GraphiQL's own (opts.documentAST) is updated 100 ms after the
  // editor's last change, so a query run at once would go by the previous one's (a subscription over HTTP)
  function documentOf(query) {
    try {
      return GraphiQL.GraphQL.parse(query);
    } catch (error) {
      return undefined;  // sent over HTTP as it is: the gateway says what is wrong with it
    }
  }

  // One fetcher per Authorization value of the headers pane, each with its own (lazy) WebSocket client:
  // a token typed into the pane applies to the next subscription, on a connection of its own.
  var fetchers = {};
  function fetcherFor(authorization) {
    if (!fetchers[authorization]) {
      var options = {url: fetchURL, headers: headers};
      if (subscribeURL) {
        options.wsClient = graphqlWs.createClient({
          url: subscribeURL,
          lazy: true,
          connectionParams: authorization ? {Authorization: authorization} : {},
          // 4403: the token is bad, expired or revoked; the same token would be refused again
          shouldRetry: function (event) { return !(event && event.code === 4403); },
        });
      }
      fetchers[authorization] = GraphiQL.createFetcher(options);
    }
    return fetchers[authorization];
  }

  function fetcher(params, opts) {
    var ast = documentOf(params.query);
    var operation = ast && GraphiQL.GraphQL.getOperationAST(ast, params.operationName || undefined);
    if (!subscribeURL && operation && operation.operation === "subscription") {
      throw new Error("Subscriptions are served over WebSocket at /graphql only: run them in GraphiQL at /graphql.");
    }
    var options = Object.assign({}, opts, {documentAST: ast});
    return fetcherFor(authorizationOf(opts && opts.headers))(params, options);
  }

  function updateURL() {
    history.replaceState(null, null, locationQuery(parameters));
  }

  function GraphiQLWithExplorer() {
    var state = React.useState(parameters.query);
    var query = state[0], setQuery = state[1];

    function onEditQuery(newQuery) {
      setQuery(newQuery);
      parameters.query = newQuery;
      updateURL();
    }

    var explorerPlugin = GraphiQLPluginExplorer.useExplorerPlugin({query: query, onEdit: onEditQuery});
    var options = {
      fetcher: fetcher,
      plugins: [explorerPlugin],
      defaultEditorToolsVisibility: true,
      onEditQuery: onEditQuery,
      onEditVariables: function (variables) { parameters.variables = variables; updateURL(); },
      onEditOperationName: function (name) { parameters.operationName = name; updateURL(); },
      isHeadersEditorEnabled: GRAPHENE_SETTINGS.graphiqlHeaderEditorEnabled,
      shouldPersistHeaders: GRAPHENE_SETTINGS.graphiqlShouldPersistHeaders,
      query: query,
    };
    if (parameters.variables) {
      options.variables = parameters.variables;
    }
    if (parameters.operationName) {
      options.operationName = parameters.operationName;
    }
    return React.createElement(GraphiQL, options);
  }

  ReactDOM.render(React.createElement(GraphiQLWithExplorer), document.getElementById("editor"));
})(document, window.GRAPHENE_SETTINGS, window.GraphiQL, window.React, window.ReactDOM, window.graphqlWs,
   window.GraphiQLPluginExplorer, window.history, window.location);
