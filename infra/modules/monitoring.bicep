// Log Analytics workspace + workspace-based Application Insights.
// Ingestion uses Microsoft Entra authentication only (DisableLocalAuth on the component):
// the instrumentation key inside APPLICATIONINSIGHTS_CONNECTION_STRING then only identifies
// the target resource and cannot be used on its own to write telemetry; the app must present
// a token for its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which needs the
// "Monitoring Metrics Publisher" role on the component (granted below).
param logAnalyticsName string
param appInsightsName string
param location string
param tags object
param retentionInDays int = 30
@description('Principal id of the function app identity (Monitoring Metrics Publisher on the component).')
param publisherPrincipalId string

var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource law 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Queries and ingestion through Entra only; no workspace shared keys.
      disableLocalAuth: true
    }
  }
}

resource appi 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: law.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appi.id, publisherPrincipalId, monitoringMetricsPublisher)
  scope: appi
  properties: {
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

output appInsightsConnectionString string = appi.properties.ConnectionString
output appInsightsId string = appi.id
output logAnalyticsId string = law.id
